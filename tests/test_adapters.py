"""Adapters: parameter counts, exact zero-shot start, MMA's formula and gradients, the
heterogeneous mixture, TR-SVD from a dense bank, and training only the adapter pytree."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from adaring_jax import adapters, params as params_report
from adaring_jax.adapters import adaring, tensor_ring as tr
from adaring_jax.job import backbone, objective, optim
from adaring_jax.models import clip
from configs import fewshot
import adapted

MMA_VIT_B16 = 674_560


def test_mma_count_is_mmas_674560():
    config = fewshot.get_config("method=mma,arch=vit_b16")
    rows, total = params_report.report(config)
    assert total == MMA_VIT_B16
    assert adapters.count(adapters.spec_from_config(config, clip.PRESETS["ViT-B/16"])) == total
    # 84,320 per layer x 8 layers: Down/Up per tower with bias, one Shared 32x32 with bias.
    assert total == 8 * ((768 * 32 + 32) + (32 * 768 + 768) + (512 * 32 + 32) + (32 * 512 + 512)
                         + (32 * 32 + 32))


def test_default_adaring_trains_at_most_ten_percent_of_mma():
    """The default: weight-update rings in all 12 blocks of both towers, a bank of one ring
    per tower over (layers, q/k/v/o, in modes, out modes) at rank 6 and a bank of a ring per
    MLP projection (fc1, fc2) at rank 3, gated per layer (experiments/adaring_search.md)."""
    config = fewshot.get_config("arch=vit_b16")
    assert config.method == "adaring" and config.adapter.start == 1
    _, total = params_report.report(config)
    split = lambda n: sum(tr.factorize(n, 16))  # noqa: E731  768 -> 12+8+8, 512 -> 8+8+8
    attention = 36 * ((12 + 4 + 2 * split(768)) + (12 + 4 + 2 * split(512)))
    mlp = 9 * 2 * ((12 + split(768) + split(3072)) + (12 + split(512) + split(2048)))
    assert total == attention + mlp + 2 * 12 * 2 == 7_824  # + per-layer gates
    assert total <= MMA_VIT_B16 // 10


def test_branch_adaring_trains_at_most_ten_percent_of_mma():
    """`sites=branch`: the earlier default, rings of MMA's bottleneck in blocks 5-12."""
    config = fewshot.get_config("arch=vit_b16,sites=branch")
    assert config.method == "adaring"
    _, total = params_report.report(config)
    assert total <= MMA_VIT_B16 // 10
    # Rings: layer mode 8, then 768 -> 12*8*8, 512 -> 8*8*8, 32 -> 8*4; uniform rank r per bank.
    mode_sum = 2 * (8 + 12 + 8 + 8 + 8 + 4) + 2 * (8 + 8 + 8 + 8 + 8 + 4) + (8 + 8 + 4 + 8 + 4)
    rings = sum(mode_sum * r * r for r in config.adapter.ranks)
    k = len(config.adapter.ranks)
    biases = k * 8 * 3 * 32 + 8 * (768 + 512)  # Down/Shared per bank; one shared Up bias
    assert total == rings + biases + 2 * 8 * k  # + per-layer gates
    assert total == 30_736
    # By kind: each family's first core is its layer-specific slices (rank x 8 layers x rank).
    slices = 5 * sum(8 * r * r for r in config.adapter.ranks)
    assert params_report.by_kind(params_report.report(config)[0]) == {
        "ring cores, layer-specific slices": slices, "ring cores, layer-shared": rings - slices,
        "biases": biases, "bank gates": 2 * 8 * k}


def test_zeroshot_has_no_trainable_params():
    assert params_report.report(fewshot.get_config("method=zeroshot,arch=vit_b16"))[1] == 0


def test_spec_errors_list_valid_choices():
    with pytest.raises(ValueError, match="unknown method .lora.; valid: zeroshot, mma, adaring"):
        adapters.make_spec("lora", clip.PRESETS["tiny"], 1, 2)
    with pytest.raises(ValueError, match=r"5..12 \(1-based\) must lie within 1..4"):
        adapters.make_spec("mma", clip.PRESETS["tiny"], 5, 12)


def _spec(method, **kw):
    if method == "adaring":  # the branch form; tests/test_ring_updates.py has the updates
        kw = {"sites": "branch", **kw}
    return adapters.make_spec(method, clip.PRESETS["tiny"], 2, 4, hidden=8, **kw)


@pytest.mark.parametrize("ranks,bias,layer_rank", [((3,), "dense", 0), ((2, 4, 8), "dense", 0),
                                                   ((2, 4), "shared", 0), ((3,), "none", 0),
                                                   ((2, 4), "dense", 6), ((2, 4), "ring", 0)])
def test_fresh_adaring_is_exactly_zero_shot_with_nonzero_gradient(tiny, ranks, bias,
                                                                  layer_rank):
    model, params, pixels, ids = tiny
    spec = _spec("adaring", ranks=ranks, max_mode=4, bias=bias, layer_rank=layer_rank)
    a = adapters.init(spec, 1)
    # Backbone and inputs are jit arguments, as in training: closed-over constants would be
    # constant-folded by XLA's evaluator, whose rounding differs from the compiled kernels'.
    feats = jax.jit(lambda ap, p, x, t: adapted.features(model, p, ap, spec, x, t))
    img, txt = feats(a, params, pixels, ids)
    np.testing.assert_array_equal(img, clip.encode_image(model, params, pixels))
    np.testing.assert_array_equal(txt, clip.encode_text(model, params, ids))
    g = jax.jit(jax.grad(lambda ap, p, x, t: sum(jnp.sum(f ** 2) for f in feats(ap, p, x, t))))(
        a, params, pixels, ids)
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g)) > 0
    # The layer-slice core of each Up ring receives the gradient.
    assert float(jnp.abs(g["bank_0"]["vision"]["up"]["cores"][0]).max()) > 0


def test_bias_modes_and_init_scale():
    dense = _spec("adaring", ranks=(2, 4), max_mode=4)
    n, h, (dv, dt) = dense.num_layers, dense.hidden, dense.widths
    # Per bank: Down (both towers) and Shared biases of width h; per tower one Up bias.
    per_layer = 2 * (2 * h + h) + dv + dt
    shared = dataclasses.replace(dense, bias="shared")
    none = dataclasses.replace(dense, bias="none")
    assert adapters.count(dense) - adapters.count(shared) == (n - 1) * per_layer
    assert adapters.count(dense) - adapters.count(none) == n * per_layer
    # A shared bias is the same in every layer of the materialized stack.
    a = _randomize(adapters.init(shared, 1), 2)
    down_bias = adapters.layer_adapters(a, shared)["vision"].biases[0]
    np.testing.assert_array_equal(down_bias, jnp.broadcast_to(down_bias[:1], down_bias.shape))
    assert not any("bias" in str(k) for k, _ in
                   jax.tree_util.tree_flatten_with_path(adapters.init(none, 1))[0])
    # init_scale multiplies the materialized ring weights, whatever the ranks.
    big = dataclasses.replace(dense, init_scale=3.0)
    w1 = adapters.layer_adapters(adapters.init(dense, 5), dense)["vision"].kernels[0]
    w3 = adapters.layer_adapters(adapters.init(big, 5), big)["vision"].kernels[0]
    np.testing.assert_allclose(w3, 3.0 * w1, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="choose from: dense, shared, none, ring"):
        _spec("adaring", ranks=(3,), max_mode=4, bias="tensor")
    # bias="ring": each Down/Shared bias stack is a ring over (N, modes of h) at the bank's
    # rank, each Up bias one at the largest rank; every ring's first core starts at zero.
    ring = dataclasses.replace(dense, bias="ring")
    mode_sum = lambda w: n + sum(ring.modes(w))  # noqa: E731
    rings = sum(3 * r * r * mode_sum(h) for r in ring.ranks) \
        + sum(max(ring.ranks) ** 2 * mode_sum(d) for d in (dv, dt))
    assert adapters.count(ring) - adapters.count(none) == rings
    fresh = adapters.init(ring, 1)
    assert float(jnp.abs(adapters.layer_adapters(fresh, ring)["text"].biases[2]).max()) == 0.0
    g = jax.grad(lambda a: sum(jnp.sum(jnp.sin(b)) for b in
                               adapters.layer_adapters(a, ring)["vision"].biases))(fresh)
    assert float(jnp.abs(g["up_bias"]["vision"][0]).max()) > 0
    assert float(jnp.abs(g["bank_1"]["shared"]["bias"][0]).max()) > 0


def test_core_learning_rate_multipliers_scale_one_sgd_step():
    spec = _spec("adaring", ranks=(2,), max_mode=4)
    a = adapters.init(spec, 3)
    grads = jax.tree.map(jnp.ones_like, a)
    config = ml_collections.ConfigDict({"optim": {
        "name": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0, "schedule": "cosine",
        "warmup_steps": 0}, "adapter": {"lr_layer_core": 2.0, "lr_shared_cores": 0.0}})
    opt, _ = optim.make_optimizer(config, spec, 10, 10)
    updates, _ = opt.update(grads, opt.init(a), a)
    cores = updates["bank_0"]["vision"]["down"]["cores"]
    np.testing.assert_allclose(cores[0], -0.2 * np.ones(cores[0].shape), rtol=1e-6)
    assert all(float(jnp.abs(c).max()) == 0 for c in cores[1:])
    np.testing.assert_allclose(updates["bank_0"]["vision"]["down"]["bias"], -0.1, rtol=1e-6)
    # Multipliers of 1 leave the optimizer exactly as before (same state structure).
    config.adapter.lr_layer_core = config.adapter.lr_shared_cores = 1.0
    plain, _ = optim.make_optimizer(config, spec, 10, 10)
    want = optax.chain(optax.add_decayed_weights(0.0), optax.sgd(lambda s: 0.1, momentum=0.0))
    assert jax.tree.structure(plain.init(a)) == jax.tree.structure(want.init(a))


def test_mma_init_is_near_but_not_equal_to_zero_shot_and_exact_with_up_zeroed(tiny):
    model, params, pixels, ids = tiny
    spec = _spec("mma")
    a = adapters.init(spec, 2)
    img0 = clip.encode_image(model, params, pixels)
    img, _ = adapted.features(model, params, a, spec, pixels, ids)
    assert 0 < float(jnp.abs(img - img0).max()) < 1e-2
    for t in adapters.TOWERS:
        a[t]["up"] = jax.tree.map(jnp.zeros_like, a[t]["up"])
    img, txt = adapted.features(model, params, a, spec, pixels, ids)
    np.testing.assert_array_equal(img, img0)
    np.testing.assert_array_equal(txt, clip.encode_text(model, params, ids))


def _randomize(tree, seed, std=0.2):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([std * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def test_mma_forward_matches_the_formula(tiny):
    """x_{l+1} = Block_l(x_l) + alpha * Up(relu(Shared(relu(Down(LN1_l(x_l)))))), by hand."""
    model, params, pixels, _ = tiny
    spec = _spec("mma", alpha=0.5)
    a = _randomize(adapters.init(spec, 3), 4)
    got = clip.encode_image(model, params, pixels,
                            adapters.layer_adapters(a, spec)["vision"])

    vp = params["vision_model"]
    enc = clip.Encoder(model.config.vision, causal=False)
    h = model.apply({"params": params}, pixels, method=lambda m, x: m.vision_model.embed(x))
    for layer in range(4):
        out = enc.apply({"params": vp["encoder"]}, h, None, layer, layer + 1)
        if layer in spec.layers:
            j = spec.layers.index(layer)
            ln1 = jax.tree.map(lambda p: p[layer], vp["encoder"]["layers"]["layer_norm1"])
            u = nn.LayerNorm(epsilon=1e-5).apply({"params": ln1}, h)
            down = jax.nn.relu(u @ a["vision"]["down"]["kernel"][j] + a["vision"]["down"]["bias"][j])
            mid = jax.nn.relu(down @ a["shared"]["kernel"][j] + a["shared"]["bias"][j])
            up = mid @ a["vision"]["up"]["kernel"][j] + a["vision"]["up"]["bias"][j]
            out = out + 0.5 * up
        h = out
    want = model.apply({"params": params}, h,
                       method=lambda m, x: m.visual_projection(m.vision_model.pool(x)))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_mma_gradient_treatment_divides_adapter_grads_by_alpha(tiny):
    model, params, pixels, ids = tiny
    plain = _spec("mma", alpha=0.01, unscaled_grads=False)
    treated = dataclasses.replace(plain, unscaled_grads=True)
    a = _randomize(adapters.init(plain, 5), 6)

    def loss(ap, spec):
        img, txt = adapted.features(model, params, ap, spec, pixels, ids)
        return jnp.sum(jnp.sin(img)) + jnp.sum(jnp.cos(txt))

    assert float(loss(a, plain)) == float(loss(a, treated))  # same forward
    g0, g1 = jax.grad(loss)(a, plain), jax.grad(loss)(a, treated)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(y, x / 0.01, rtol=1e-4, atol=1e-6),
                 g0, g1)


def test_heterogeneous_banks_are_a_gated_sum_of_bank_mlps():
    spec = _spec("adaring", ranks=(2, 3, 4), max_mode=4)
    a = _randomize(adapters.init(spec, 7), 8, std=0.5)
    la = adapters.layer_adapters(a, spec)["text"]
    banks = adaring.bank_weights(a, spec)
    gates = adaring.gate_values(a, spec)["text"]
    u = jax.random.normal(jax.random.key(9), (5, 32))
    for j in range(spec.num_layers):
        combined = clip.adapter_branch([k[j] for k in la.kernels], [b[j] for b in la.biases], u)
        want = a["up_bias"]["text"][j]
        for b, bank in enumerate(banks):
            (down, shared, up), (bd, bs, _) = bank["text"]
            h = jax.nn.relu(jax.nn.relu(u @ down[j] + bd[j]) @ shared[j] + bs[j])
            want = want + gates[j, b] * (h @ up[j])
        np.testing.assert_allclose(combined, want, rtol=1e-4, atol=1e-5)


def test_diversity_term():
    single = _spec("adaring", ranks=(4,), max_mode=4)
    assert float(adaring.diversity(adapters.init(single, 0), single)) == 0.0
    spec = _spec("adaring", ranks=(3, 3), max_mode=4)
    a = _randomize(adapters.init(spec, 1), 2)
    div = float(adaring.diversity(a, spec))
    assert 0 < div < 1
    a["bank_1"] = a["bank_0"]  # identical banks: identical representations
    assert float(adaring.diversity(a, spec)) == pytest.approx(1.0, abs=1e-4)
    fresh = adapters.init(spec, 4)  # at init (Up zero) the term and its gradient are moderate
    g = jax.grad(adaring.diversity)(fresh, spec)
    assert 0 < float(adaring.diversity(fresh, spec)) < 1
    norm = float(optax.global_norm(g))
    assert 0 < norm < 10, norm


def test_from_dense_recovers_a_low_tr_rank_bank():
    ring_spec = _spec("adaring", ranks=(2,), max_mode=4)
    ring = _randomize(adapters.init(ring_spec, 10), 11, std=0.7)
    (bank,) = adaring.bank_weights(ring, ring_spec)
    dense = {"shared": {"kernel": bank["text"][0][1], "bias": bank["text"][1][1]}}
    for t in adapters.TOWERS:
        (down, _, up), (bd, _, _) = bank[t]
        dense[t] = {"down": {"kernel": down, "bias": bd},
                    "up": {"kernel": up, "bias": ring["up_bias"][t]}}
    mma_spec = _spec("mma")
    recovered, errors, _ = adaring.from_dense(dense, ring_spec, rel_eps=1e-6)
    assert set(errors) == {"vision/down", "vision/up", "text/down", "text/up", "shared"}
    assert max(errors.values()) < 1e-4
    want = adapters.layer_adapters(dense, mma_spec)
    got = adapters.layer_adapters(recovered, ring_spec)
    for t in adapters.TOWERS:
        for x, y in zip(got[t].kernels, want[t].kernels):
            assert float(jnp.linalg.norm(x - y) / jnp.linalg.norm(y)) < 1e-4
    # Cores found by TR-SVD are far smaller than the dense bank they reproduce.
    ring_size = sum(tr.tr_num_params(f["cores"]) for f in jax.tree.leaves(
        recovered["bank_0"], is_leaf=lambda n: isinstance(n, dict) and "cores" in n))
    assert ring_size < adapters.count(mma_spec) / 2


def test_layer_rank_widens_only_the_layer_cores_bonds():
    base = _spec("adaring", ranks=(2, 4), max_mode=4)
    wide = dataclasses.replace(base, layer_rank=6)
    extra = 0
    for (_, _), (i, o) in base.families().items():
        modes = (base.num_layers, *base.modes(i), *base.modes(o))
        for r in base.ranks:  # core 0 (6, N, 6), core 1 (6, m1, r), last core (r, m_last, 6)
            extra += (36 - r * r) * modes[0] + (6 - r) * r * (modes[1] + modes[-1])
    assert adapters.count(wide) - adapters.count(base) == extra
    cores = adapters.init(wide, 1)["bank_0"]["vision"]["down"]["cores"]
    assert cores[0].shape[::2] == (6, 6) and cores[1].shape[0] == 6 and cores[-1].shape[2] == 6
    assert all(c.shape[::2] == (2, 2) for c in cores[2:-1])
    with pytest.raises(ValueError, match="adapter.layer_rank=-1 must be an integer >= 0"):
        _spec("adaring", ranks=(2,), max_mode=4, layer_rank=-1)


def test_from_dense_with_a_rank_cap_has_the_shapes_of_a_uniform_rank_spec():
    mma_spec = _spec("mma")
    dense = _randomize(adapters.init(mma_spec, 3), 4, std=0.5)
    for rank, layer_rank in ((1, 0), (3, 0), (4, 0), (2, 5)):
        ring_spec = _spec("adaring", ranks=(rank,), max_mode=4, layer_rank=layer_rank)
        params, errors, found = adaring.from_dense(dense, ring_spec, rel_eps=None,
                                                    max_rank=rank)
        want = jax.tree.map(lambda x: x.shape, adapters.param_shapes(ring_spec))
        assert jax.tree.map(lambda x: x.shape, params) == want
        assert all(max(r) <= max(rank, layer_rank) for r in found.values())
        # The zero padding changes nothing: the padded ring materializes to the same stack.
        got = adapters.layer_adapters(params, ring_spec)["vision"].kernels[0]
        w = dense["vision"]["down"]["kernel"]
        err = float(jnp.linalg.norm(got - w) / jnp.linalg.norm(w))
        assert abs(err - errors["vision/down"]) < 1e-5


@pytest.mark.parametrize("method", ["mma", "adaring"])
def test_training_moves_only_the_adapters_and_lowers_the_loss(tiny, method):
    model, params, pixels, ids = tiny
    spec = _spec(method, **({"ranks": (2, 4), "max_mode": 4} if method == "adaring" else {}))
    a = adapters.init(spec, 12)
    labels = jnp.array([0, 1, 2, 1])
    text_ref = clip.encode_text(model, params, ids)
    weights = {"text_l1": 1.0, "image_l1": 1.0, "kl": 1.0, "diversity": 0.1}
    backbone = jax.tree.map(np.array, params)
    opt = optax.adam(3e-3)
    state = opt.init(a)

    @jax.jit
    def step(a, state):
        (loss, _), g = jax.value_and_grad(objective.loss_fn, has_aux=True)(
            a, params, model, spec, weights, pixels, labels, ids, text_ref)
        updates, state = opt.update(g, state, a)
        return optax.apply_updates(a, updates), state, loss, g

    losses = []
    for _ in range(5):
        a, state, loss, g = step(a, state)
        losses.append(float(loss))
    assert losses[-1] < losses[0], losses
    # The differentiated pytree is the adapter's: gradients have its structure, nothing else.
    assert jax.tree.structure(g) == jax.tree.structure(a)
    jax.tree.map(np.testing.assert_array_equal, params, backbone)


def test_params_command_prints_table_and_total_last():
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "adaring_jax.params",
                          "--config=configs/fewshot.py:method=mma,arch=vit_b16"], cwd=root,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()
    assert out[-1] == "trainable parameters: 674560"
    assert any(line.startswith("vision/down/kernel") and "(8, 768, 32)" in line for line in out)


@pytest.mark.parametrize("method", ["mma", "adaring"])
def test_shared_vision_trunk_gives_the_loss_and_gradients_of_two_full_passes(tiny, method):
    """loss_fn runs the frozen vision layers below the first adapted block once and branches
    into the adapted and the frozen reference pass; the same loss from two full passes."""
    from adaring_jax.job import losses
    model, params, pixels, ids = tiny
    spec = _spec(method, **({"ranks": (2, 4), "max_mode": 4} if method == "adaring" else {}))
    a = _randomize(adapters.init(spec, 1), 3, std=0.5)
    labels, mask = jnp.array([0, 1, 2, 0]), jnp.array([1.0, 1.0, 1.0, 0.0])
    text_ref = clip.normalize(clip.encode_text(model, params, ids))
    weights = {"text_l1": 0.3, "image_l1": 0.2, "kl": 0.5, "diversity": 0.1}

    def reference(ap, p):
        img, txt = adapted.features(model, p, ap, spec, pixels, ids)
        img0 = clip.encode_image(model, p, pixels)
        scale = p["logit_scale"]
        logits = clip.scaled_cosine(img, txt, scale)
        terms = {"ce": losses.cross_entropy(logits, labels, mask),
                 "text_l1": losses.feature_l1(txt, text_ref),
                 "image_l1": losses.feature_l1(img, img0, mask),
                 "kl": losses.kl_to_reference(logits, clip.scaled_cosine(img0, text_ref, scale),
                                              mask),
                 **({"diversity": adaring.diversity(ap, spec)} if spec.method == "adaring"
                    else {})}
        return losses.generalization_aware(terms, weights)[0]

    shared = lambda ap, p: objective.loss_fn(ap, p, model, spec, weights, pixels, labels,  # noqa
                                             ids, text_ref, mask)[0]
    got, got_grad = jax.jit(jax.value_and_grad(shared))(a, params)
    want, want_grad = jax.jit(jax.value_and_grad(reference))(a, params)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    for g, w in zip(jax.tree.leaves(got_grad), jax.tree.leaves(want_grad)):
        w = np.asarray(w)  # float32 rounding, relative to each gradient's scale
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-4,
                                   atol=1e-6 * max(1.0, float(np.abs(w).max())))


@pytest.mark.parametrize("field", ["remat", "unrolled"])
def test_remat_and_fast_step_change_speed_not_the_math(tiny, field):
    """model.remat recomputes block activations in the backward pass; model.fast_step trains
    the unrolled model (layers as straight-line code, heads-major attention). Both compute
    the same loss and gradients, up to float rounding."""
    model, params, pixels, ids = tiny
    remat = clip.CLIP(dataclasses.replace(model.config, **{field: True}))
    spec = _spec("adaring", ranks=(2, 4), max_mode=4)
    a = _randomize(adapters.init(spec, 1), 5, std=0.5)
    labels = jnp.array([0, 1, 2, 0])
    text_ref = clip.normalize(clip.encode_text(model, params, ids))
    weights = {"text_l1": 0.3, "image_l1": 0.2, "kl": 0.5}

    def grads(m):
        f = lambda ap, p: objective.loss_fn(ap, p, m, spec, weights, pixels, labels, ids,  # noqa
                                            text_ref)[0]
        return jax.jit(jax.value_and_grad(f))(a, params)

    (l0, g0), (l1, g1) = grads(model), grads(remat)
    np.testing.assert_allclose(float(l1), float(l0), rtol=1e-6)
    assert jax.tree.structure(g1) == jax.tree.structure(g0)
    for x, y in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        y = np.asarray(y)
        np.testing.assert_allclose(np.asarray(x), y, rtol=1e-5,
                                   atol=1e-6 * max(1.0, float(np.abs(y).max())))


def test_fast_step_switches_only_the_train_steps_model(tiny):
    """train.py passes backbone.step_model(...) to the step and keeps `model` for evaluation;
    fast_step is the default, False trains the scanned model."""
    model = tiny[0]
    config = fewshot.get_config("smoke")
    stepped = backbone.step_model(model, config)
    assert stepped.config.unrolled and not model.config.unrolled
    assert dataclasses.replace(stepped.config, unrolled=False) == model.config
    config.unlock()
    config.model.fast_step = False
    assert backbone.step_model(model, config) is model


class _Pictures:
    """37 random 32 x 32 pictures, labelled by `label(pixels)` of their evaluation pixels."""

    def __init__(self, label):
        from adaring_jax.data import pipeline
        rng = np.random.default_rng(5)
        self.images = rng.integers(0, 256, (37, 32, 32, 3), dtype=np.uint8)
        self.labels = np.asarray(label(np.stack([pipeline.eval_transform(i, 32)
                                                 for i in self.images])))

    def __len__(self):
        return 37

    def __getitem__(self, i):
        return {"image": self.images[i], "label": int(self.labels[i])}


@pytest.mark.parametrize("method", ["adaring", "mma", "clip_lora", "coop"])
def test_one_pass_evaluation_equals_two_passes_bit_for_bit(tiny, method):
    from adaring_jax.job import evaluate, sharding
    model, frozen, _, _ = tiny
    config = fewshot.get_config(f"smoke,method={method}")
    spec = adapters.spec_from_config(config, model.config)
    params = _randomize(adapters.init(spec, 1), 2, std=1.0)  # far from zero-shot
    mesh = sharding.make_mesh()
    rng = np.random.default_rng(0)
    ids = np.full((8, 16), 999, np.int32)
    ids[:, 0], ids[:, 1:5] = 998, rng.integers(0, 900, (8, 4))
    adapted = evaluate.make_class_features(model, spec, mesh)(frozen, params, ids)
    plain = evaluate.make_class_features(model, adapters.NONE, mesh)(frozen, {}, ids)
    # Labelled by the adapted model's own predictions: it scores 100, zero-shot CLIP less.
    layer = adapters.layer_adapters(params, spec)["vision"]
    src = _Pictures(lambda px: (clip.normalize(clip.encode_image(model, frozen, px, layer))
                                @ adapted.T).argmax(-1))
    indices = np.arange(37)
    two = (evaluate.make_accuracy(model, spec, mesh, 32, 16)(frozen, params, adapted, src,
                                                             indices),
           evaluate.make_accuracy(model, adapters.NONE, mesh, 32, 16)(frozen, {}, plain, src,
                                                                      indices))
    one = evaluate.make_joint_accuracy(model, spec, mesh, 32, 16)(frozen, params, adapted, plain,
                                                                  src, indices)
    assert one == two
    assert two[0] == (100.0, 37) and two[1][0] < 100.0
