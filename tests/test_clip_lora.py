"""CLIP-LoRA through the method table: the reference's count (184,320 on ViT-B/16), an exact
zero-shot start with a gradient on B, LoRA's formula against a direct computation, dropout as
a pure function of (seed, step), the reference's recipe on real checkpoints, and a smoke job."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from adaring_jax import adapters, params as params_report
from adaring_jax.job import objective, train
from adaring_jax.models import clip
from configs import base2novel, fewshot
import adapted


def test_count_is_clip_loras_184320_on_vit_b16():
    config = fewshot.get_config("method=clip_lora,arch=vit_b16")
    assert params_report.report(config)[1] == 12 * 3 * 2 * 2 * (768 + 512) == 184_320
    assert (config.adapter.start, config.adapter.end, config.adapter.rank) == (1, 12, 2)


def test_real_checkpoint_recipe_is_clip_loras():
    config = fewshot.get_config("method=clip_lora,checkpoint=openai/clip-vit-base-patch16")
    o = config.optim
    assert (o.name, o.lr, o.weight_decay, o.schedule, o.min_lr, o.batch_size, o.steps) == (
        "adamw", 2e-4, 1e-2, "cosine", 1e-6, 32, 500 * 16)
    assert config.adapter.dropout == 0.25 and config.adapter.alpha == 1.0


def _spec(**kw):
    return adapters.make_spec("clip_lora", clip.PRESETS["tiny"], 1, 4, **kw)


def test_fresh_lora_is_exactly_zero_shot_and_b_gets_the_gradient(tiny):
    model, params, pixels, ids = tiny
    spec = _spec()
    a = adapters.init(spec, 1)
    feats = jax.jit(lambda ap, p, x, t: adapted.features(model, p, ap, spec, x, t))
    img, txt = feats(a, params, pixels, ids)
    np.testing.assert_array_equal(img, jax.jit(clip.encode_image, static_argnums=0)(
        model, params, pixels))
    np.testing.assert_array_equal(txt, jax.jit(clip.encode_text, static_argnums=0)(
        model, params, ids))
    g = jax.grad(lambda ap: sum(jnp.sum(f ** 2) for f in feats(ap, params, pixels, ids)))(a)
    assert float(jnp.abs(g["vision"]["q"]["b"]).max()) > 0
    assert float(jnp.abs(g["text"]["v"]["b"]).max()) > 0


def test_lora_is_w_x_plus_scale_b_a_x_on_q_k_v(tiny):
    """A LoRA-adapted tower equals the plain tower whose q/k/v kernels absorb scale * A B."""
    model, params, pixels, _ = tiny
    spec = _spec(rank=3, alpha=2.0, dropout=0.0)
    a = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(3), x.shape),
                     adapters.init(spec, 2))
    got = clip.encode_image(model, params, pixels, adapters.layer_adapters(a, spec)["vision"])
    merged = jax.tree.map(lambda x: x, params)
    layers = merged["vision_model"]["encoder"]["layers"]["self_attn"]
    for t in "qkv":
        delta = spec.scale * jnp.einsum("nir,nro->nio", a["vision"][t]["a"], a["vision"][t]["b"])
        layers[f"{t}_proj"]["kernel"] = layers[f"{t}_proj"]["kernel"] + delta
    want = clip.encode_image(model, merged, pixels)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_dropout_is_a_pure_function_of_seed_and_step(tiny):
    model, params, pixels, ids = tiny
    spec = _spec(dropout=0.5)
    a = jax.tree.map(lambda x: x + 0.1, adapters.init(spec, 4))
    labels = jnp.array([0, 1, 2, 1])
    loss = jax.jit(lambda rng: objective.loss_fn(a, params, model, spec, {}, pixels, labels,
                                                 ids, None, rng=rng)[0])
    k1, k2 = jax.random.key(1), jax.random.key(2)
    assert float(loss(k1)) == float(loss(k1)) != float(loss(k2))
    plain = dataclasses.replace(spec, dropout=0.0)
    no_drop = objective.loss_fn(a, params, model, plain, {}, pixels, labels, ids, None, rng=k1)
    evaluation = objective.loss_fn(a, params, model, spec, {}, pixels, labels, ids, None)
    np.testing.assert_allclose(float(no_drop[0]), float(evaluation[0]), rtol=1e-6)


def test_a_clip_lora_smoke_job_trains_and_evaluates(tmp_path):
    results = train.train_and_evaluate(base2novel.get_config("smoke,method=clip_lora"),
                                       str(tmp_path))
    assert results["method"] == "clip_lora" and set(results["adapted"]) == {"base", "novel", "hm"}
    assert results["trainable_params"] == 4 * 3 * 2 * 2 * (32 + 32)  # tiny: 4 blocks, width 32
