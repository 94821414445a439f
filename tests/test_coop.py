"""CoOp through the method table: 2,048 parameters on ViT-B/16, context vectors that start as
the frozen embeddings of "a photo of a" (so the fresh model is the zero-shot CLIP with that
prompt, exactly), only they get gradients, CoOp's recipe and Dassl's constant warmup on real
checkpoints, and a smoke job."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaring_jax import adapters, params as params_report
from adaring_jax.errors import ConfigError
from adaring_jax.job import backbone, evaluate, optim, sharding, train
from adaring_jax.models import clip, convert
from configs import base2novel, fewshot


def test_count_is_coops_2048_on_vit_b16():
    assert params_report.report(fewshot.get_config("method=coop,arch=vit_b16"))[1] == 4 * 512


def test_real_checkpoint_recipe_and_dassls_constant_warmup():
    config = fewshot.get_config("method=coop,checkpoint=openai/clip-vit-base-patch16")
    o = config.optim
    assert (o.name, o.lr, o.batch_size, o.epochs, o.schedule, o.warmup_epochs, o.warmup_lr) == (
        "sgd", 0.002, 32, 50, "epoch_cosine", 1, 1e-5)
    lr = optim.make_schedule(o, 50 * 10, 10)
    got = [float(lr(e * 10)) for e in (0, 1, 2, 49)]
    want = [1e-5, 0.002, 0.002 * 0.5 * (1 + np.cos(np.pi / 50)),
            0.002 * 0.5 * (1 + np.cos(np.pi * 48 / 50))]
    np.testing.assert_allclose(got, want, rtol=1e-5)  # float32 cosine


def test_a_prompt_that_does_not_start_with_the_context_is_refused(tmp_path):
    config = base2novel.get_config("smoke,method=coop")
    config.unlock()
    config.data.prompt = "coop"
    with pytest.raises(ConfigError, match="coop learns the context 'a photo of a'"):
        train.train_and_evaluate(config, str(tmp_path))


def test_fresh_coop_is_the_zero_shot_clip_and_only_the_context_trains():
    config = base2novel.get_config("smoke,method=coop")
    model, frozen, tok = backbone.load(config, ["a", "photo", "of", "red", "circle", "."])
    spec = adapters.spec_from_config(config, model.config)
    params = adapters.get("coop").backbone_init(adapters.init(spec, 1), spec, model, frozen,
                                                 tok, config.adapter)
    ids = evaluate.prompt_ids(tok, ["red circle", "circle"], "a photo of a {}.")
    features = evaluate.make_class_features(model, spec, sharding.make_mesh())
    plain = evaluate.make_class_features(model, adapters.NONE, sharding.make_mesh())
    np.testing.assert_array_equal(features(frozen, params, ids), plain(frozen, {}, ids))
    g = jax.grad(lambda p: jnp.sum(clip.encode_text(
        model, frozen, ids, adapters.layer_adapters(p, spec)["text"])[:, :3]))(params)
    assert float(jnp.abs(g["context"]).max()) > 0 and set(g) == {"context"}


def test_a_coop_smoke_job_trains_and_evaluates(tmp_path):
    results = train.train_and_evaluate(base2novel.get_config("smoke,method=coop"),
                                       str(tmp_path))
    assert results["method"] == "coop" and results["trainable_params"] == 4 * 32
    assert set(results["adapted"]) == {"base", "novel", "hm"}


def _random_context(arg, n_ctx):
    config = fewshot.get_config(arg)
    config.unlock()
    config.adapter.ctx_init, config.adapter.n_ctx = "", n_ctx
    config.lock()
    return config


def test_random_context_is_coops_16_x_512_with_x_placeholders():
    config = _random_context("method=coop,arch=vit_b16", 16)
    assert params_report.report(config)[1] == 16 * 512  # CoOp's N_CTX=16 setting: 8,192
    spec = adapters.spec_from_config(config, convert.architecture(config.model.arch, ""))
    context = np.asarray(adapters.init(spec, 1)["context"])
    assert context.shape == (16, 512) and abs(context.std() - 0.02) < 0.002  # N(0, 0.02)
    assert not np.array_equal(context, np.asarray(adapters.init(spec, 2)["context"]))
    from adaring_jax.job import task
    assert task.adapted_template(config, "{} texture.") == " ".join(["X"] * 16) + " {}."
    assert task.adapted_template(fewshot.get_config("method=coop"), "{} texture.") == \
        "a photo of a {}."


@pytest.mark.parametrize("ctx_init, n_ctx, message", [
    ("", 0, "set config.adapter.n_ctx >= 1"),
    ("a photo of a", 3, "n_ctx=3 with the 4 words"),
    ("", 80, "80 context vectors leave no room for the class name"),
])
def test_context_sizes_that_do_not_fit_are_refused(tmp_path, ctx_init, n_ctx, message):
    config = base2novel.get_config("smoke,method=coop")
    config.unlock()
    config.adapter.ctx_init, config.adapter.n_ctx = ctx_init, n_ctx
    with pytest.raises(ConfigError, match=message):
        train.train_and_evaluate(config, str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_a_random_context_smoke_job_trains_with_x_prompts(tmp_path):
    results = train.train_and_evaluate(_random_context("smoke,method=coop", 8), str(tmp_path))
    assert results["trainable_params"] == 8 * 32
    with open(tmp_path / "task.json") as f:
        assert '"adapted": "X X X X X X X X {}."' in f.read()
