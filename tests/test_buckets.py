"""Class buckets (job/buckets.py): a bucketed train step and evaluation give what the
unbucketed ones give, to float rounding, for every method; and runs of other class counts,
lengths and seeds share one program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaring_jax import adapters
from adaring_jax.job import buckets, evaluate, objective, optim, sharding
from adaring_jax.models import clip
from configs import fewshot

CLASSES, BATCH = 5, 4


def test_bucket_sizes():
    assert [buckets.classes(n) for n in (1, 5, 64, 65, 100, 199, 500, 1000)] == \
        [64, 64, 64, 128, 128, 256, 512, 1024]
    assert buckets.classes(5, devices=3) == 66
    assert [buckets.length(n, 77) for n in (7, 8, 9, 16, 17, 76)] == [8, 8, 16, 16, 24, 77]


def test_padding_keeps_the_pooled_position():
    ids = np.array([[9, 1, 2, 8, 8], [9, 3, 8, 8, 8]])
    padded, valid = buckets.pad_ids(ids, 4, 8)
    assert padded.shape == (4, 8) and valid.tolist() == [True, True, False, False]
    for eos in (8, 2):  # the first end-of-text, and the legacy argmax rule
        np.testing.assert_array_equal(clip.eos_positions(padded[:2], eos),
                                      clip.eos_positions(ids, eos))


def _setup(method):
    config = fewshot.get_config(f"arch=tiny,smoke,method={method}")
    if method == "clip_lora":  # its text-tower dropout trains unbucketed (train._bucket_training)
        config.unlock()
        config.adapter.dropout = 0.0
    model = clip.preset("tiny")
    frozen = clip.init_params(model, jax.random.key(0))
    spec = adapters.spec_from_config(config, model.config)
    params = adapters.init(spec, 0)
    # Away from the init (zeros in places), so that every adapter path carries signal.
    params = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(1), x.shape),
                          params)
    rng = np.random.default_rng(0)
    t = model.config.text
    ids = np.full((CLASSES, 7), t.eos_token_id, np.int32)
    ids[:, 0] = t.bos_token_id
    for c in range(CLASSES):  # prompts of 4-6 tokens before the end-of-text
        ids[c, 1:4 + c % 3] = rng.integers(1, t.vocab_size - 2, 3 + c % 3)
    return config, model, frozen, spec, params, ids, rng


@pytest.mark.parametrize("method", ["mma", "adaring", "coop", "clip_lora"])
def test_bucketed_loss_and_gradients_equal_unbucketed(method):
    config, model, frozen, spec, params, ids, rng = _setup(method)
    size = model.config.vision.image_size
    pixels = jnp.asarray(rng.standard_normal((BATCH, size, size, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, CLASSES, BATCH), jnp.int32)
    ref = clip.normalize(jnp.asarray(rng.standard_normal((CLASSES, model.config.projection_dim)),
                                     jnp.float32))
    weights = {"text_l1": 0.5, "image_l1": 0.5, "kl": 0.5,
               "diversity": 0.1 if method == "adaring" else 0.0}
    start = objective.text_start(model, spec)
    padded, valid = buckets.bucket_ids(ids, 1, model.config.text.context_length)
    plain = objective.Prompts.cached(model, frozen, ids, start, CLASSES)
    bucketed = objective.Prompts.cached(model, frozen, padded, start,
                                        valid=jnp.asarray(valid, jnp.float32))
    loss = lambda p, prompts, r: objective.loss_fn(  # noqa: E731
        p, frozen, model, spec, weights, pixels, labels, prompts, r, None, jax.random.key(3))
    # Gradients of the method with every loss term (compiles are the test's time: the others
    # compare the forward pass, where the masking lives).
    grad = jax.jit(jax.value_and_grad(loss, has_aux=True) if method == "adaring"
                   else lambda *a: (loss(*a), None))
    (_, m0), g0 = grad(params, plain, ref)
    (_, m1), g1 = grad(params, bucketed, jnp.asarray(buckets.pad_rows(ref, len(padded))))
    assert set(m0) >= {"ce", "text_l1", "image_l1", "kl", "accuracy"}
    for k in m0:
        np.testing.assert_allclose(m1[k], m0[k], rtol=2e-5, atol=1e-6, err_msg=k)
    # Other matmul shapes, other summation orders: rounding relative to each array's scale.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(
        a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max())), g1, g0)


@pytest.mark.parametrize("method", ["zeroshot", "adaring", "coop"])
def test_bucketed_accuracy_equals_unbucketed(method):
    _, model, frozen, spec, params, ids, rng = _setup(method)
    if method == "zeroshot":
        spec, params = adapters.NONE, {}
    mesh = sharding.make_mesh()
    plain = evaluate.make_class_features(model, spec, mesh)(frozen, params, ids)
    feats, valid = evaluate.make_class_features(model, spec, mesh, bucket=True)(
        frozen, params, ids)
    assert feats.shape[0] == 64 and int(valid.sum()) == CLASSES
    np.testing.assert_allclose(feats[:CLASSES], plain, rtol=1e-5, atol=1e-6)
    # Images whose features lie nearest a padded class (a copy of class 0): they must count
    # for class 0, never for the padding.
    img = jnp.concatenate([feats[:CLASSES], feats[CLASSES:CLASSES + 1]])
    batch = {"label": jnp.array([0, 1, 2, 3, 4, 0]), "mask": jnp.ones(6)}
    expected = 4.0 if method == "coop" else 6.0  # coop's context covers these short names
    assert float(evaluate._correct(img, (feats, valid), batch)) == \
        float(evaluate._correct(img, plain, batch)) == expected


def test_runs_of_other_lengths_and_seeds_share_one_program():
    """The bucketed step's program does not depend on the run's length or seed: the learning
    rate and the seed are arguments (and the rate is the schedule's, bit for bit)."""
    config = fewshot.get_config("arch=tiny,smoke,method=mma")
    spec = adapters.spec_from_config(config, clip.preset("tiny").config)
    mesh = sharding.make_mesh()
    texts = []
    for total, per_epoch, seed in ((640, 32, 1), (160, 8, 2)):
        opt, schedule = optim.make_optimizer(config, spec, total, per_epoch)
        given = optim.step_arguments(schedule, seed, mesh)
        for step in (0, 7, total - 1):
            assert np.asarray(given(jnp.int32(step))["lr"]) == np.asarray(
                jax.jit(schedule)(jnp.int32(step)))
        params = adapters.init(spec, 0)
        state = {"adapters": params, "opt_state": opt.init(params), "step": jnp.int32(0)}
        opt_of = optim.optimizer_of(config, spec)
        lowered = jax.jit(lambda s, g: opt_of(lambda c: g["lr"]).update(
            s["adapters"], s["opt_state"], s["adapters"])).lower(state, given(jnp.int32(0)))
        texts.append(lowered.as_text())
    assert texts[0] == texts[1]


def test_text_dropout_trains_unbucketed():
    """CLIP-LoRA's text-tower dropout draws masks of the prompt batch's shape: a bucket would
    change the draws, so its train step keeps the exact shapes."""
    from adaring_jax.job import train
    for method, bucketed in (("clip_lora", False), ("mma", True), ("coop", True)):
        config = fewshot.get_config(f"arch=tiny,smoke,method={method}")
        spec = adapters.spec_from_config(config, clip.preset("tiny").config)
        assert train._bucket_training(config, spec, adapters.init(spec, 0)) is bucketed
