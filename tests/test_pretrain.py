"""Contrastive pretraining on shapes: multi-positive targets, and a smoke run that exports a
checkpoint the adaptation job loads like any CLIP."""

import os

import jax.numpy as jnp
import numpy as np

from adaring_jax.job import pretrain
from adaring_jax.data import shapes
from adaring_jax.models import convert, tokenizer
from configs import pretrain_shapes


def test_caption_attributes_and_positives():
    assert pretrain.caption_attributes("a photo of a red star.") == (
        list(shapes.COLOURS).index("red"), shapes.SHAPES.index("star"))
    assert pretrain.caption_attributes("something blue")[1] == -1
    label = {name: i for i, name in enumerate(shapes.CLASSNAMES)}
    labels = jnp.array([label["red circle"], label["red square"], label["orange circle"]])
    pos = pretrain.positives(labels, jnp.array([0, -1, 1]), jnp.array([0, 0, -1]))
    np.testing.assert_array_equal(pos, [[1, 1, 0],    # red circle: "red circle", "circle"
                                        [0, 0, 0],    # red square: none of them
                                        [0, 1, 1]])   # orange circle: "circle", "orange"


def test_multi_positive_loss_prefers_matching_pairs():
    pos = jnp.eye(3)
    feats = jnp.eye(3)
    good = pretrain.multi_positive_clip_loss(feats, feats, jnp.log(10.0), pos)
    bad = pretrain.multi_positive_clip_loss(feats, feats[::-1], jnp.log(10.0), pos)
    assert float(good) < float(bad)


def test_pretrain_smoke_exports_a_loadable_clip(tmp_path):
    results = pretrain.run(pretrain_shapes.get_config("smoke"), str(tmp_path))
    assert set(results["zeroshot"]) == {"pretrain", "target"}
    export = os.path.join(tmp_path, "export")
    model, params = convert.load_pretrained(export)
    tok = tokenizer.load_tokenizer(export, model.config.text)
    assert tok("a photo of a red star.").shape == (1, model.config.text.context_length)
