"""The embedded default: the shipped tiny CLIP meets its zero-shot bar through the same loading
path as real CLIP weights, and the default job (no arguments) is the base-to-novel AdaRing task
on the shifted domain (that adaptation beats zero-shot there: test_tools.py, which shares the
job's run)."""

import os

import ml_collections
import pytest

from adaring_jax import config_args, params as params_report
from adaring_jax.job import pretrain, sharding, validation
from adaring_jax.data import shapes
from adaring_jax.models import convert, tokenizer
from configs import fewshot


def test_shipped_checkpoint_is_small_and_meets_the_zero_shot_bar():
    directory = convert.resolve("shapes-clip")
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
    assert size < 5e6
    model, params = convert.load_pretrained("shapes-clip")
    tok = tokenizer.load_tokenizer(directory, model.config.text)
    assert model.config.vision.layers == model.config.text.layers == 6
    config = ml_collections.ConfigDict({"eval": {"size": 64 * 10, "batch_size": 128},
                                        "data": {"num_threads": 2}})
    acc = pretrain.zeroshot_accuracy(config, model, params, tok, sharding.make_mesh())
    chance = 100 / shapes.NUM_CLASSES
    assert acc["pretrain"] >= 80  # 93.75 on 2,560 images (README)
    assert 3 * chance < acc["target"] < acc["pretrain"] - 40  # shifted: clearly lower


def test_default_config_is_the_embedded_base_to_novel_task():
    config = fewshot.get_config()
    assert (config.protocol, config.method, config.data.dataset, config.model.checkpoint,
            config.data.shapes_domain) == ("base2novel", "adaring", "shapes", "shapes-clip",
                                           "target")
    assert config.adapter.end - config.adapter.start + 1 >= 4  # several layers share the ring
    adaring = params_report.report(config)[1]
    mma = params_report.report(fewshot.get_config("method=mma"))[1]
    assert 0 < adaring <= 0.1 * mma, (adaring, mma)


def test_checkpoint_swapped_after_building_is_refused():
    config = fewshot.get_config()
    config.unlock()
    config.model.checkpoint = "openai/clip-vit-base-patch16"
    with pytest.raises(ValueError, match="pass the checkpoint as a config argument"):
        validation.validate(config)
    real = fewshot.get_config("checkpoint=openai/clip-vit-base-patch16")
    # AdaRing's update rings adapt every block; its branch form keeps MMA's blocks 5-12.
    assert (real.recipe, real.adapter.start, real.adapter.end) == ("mma", 1, 12)
    assert real.optim.name == "sgd" and real.adapter.ranks == (6, 3)
    branch = fewshot.get_config("checkpoint=openai/clip-vit-base-patch16,sites=branch")
    assert (branch.adapter.start, branch.adapter.end, branch.adapter.ranks) == (5, 12, (2, 4, 8))
    validation.validate(real)
    # The configs' name for the shipped checkpoint is one the loader resolves.
    assert config_args.EMBEDDED in convert.EMBEDDED
