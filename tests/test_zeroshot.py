"""Zero-shot classification: prompt ensembling and the command line."""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
from PIL import Image

from adaring_jax.job import evaluate
from adaring_jax.models import clip, convert, tokenizer
from conftest import FIXTURES

SRC = os.path.join(FIXTURES, "clip_quickgelu_eos2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_class_embeddings_average_normalized_prompt_features():
    model, params = convert.load_pretrained(SRC)
    tok = tokenizer.load_tokenizer(SRC, model.config.text)
    templates = ["a photo of a {}.", "a {}"]
    emb = evaluate.class_embeddings(model, params, tok, ["cat", "dog"], templates, batch_size=3)
    feats = clip.encode_text(model, params, tok(["a photo of a cat.", "a cat"]))
    feats = feats / jnp.linalg.norm(feats, axis=-1, keepdims=True)
    want = feats.mean(0) / jnp.linalg.norm(feats.mean(0))
    np.testing.assert_allclose(emb[0], want, atol=1e-6)
    np.testing.assert_allclose(jnp.linalg.norm(emb, axis=-1), 1.0, atol=1e-6)


def test_command_prints_top_k_per_image(tmp_path):
    paths = []
    for i, color in enumerate([(255, 0, 0), (0, 0, 255)]):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.new("RGB", (40, 36), color).save(paths[-1])
    env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", "adaring_jax.zeroshot", "--checkpoint", SRC,
                          "--classes", "cat,dog,red square", "--top_k", "2", *paths],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0] == paths[0] and lines[3] == paths[1]
    for line in lines[1:3] + lines[4:6]:
        pct, name = line.split("%")
        assert 0 <= float(pct) <= 100 and name.strip() in {"cat", "dog", "red square"}
