"""AdaRing's update form (adapters/ring_updates.py): rings over layers (x sites) that write
weight updates of q, k, v, o, fc1, fc2. Parameter counts by formula, the exact zero-shot
start, the ring contraction against a loop, the gated mixture of banks, the diversity term."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaring_jax import adapters, params as params_report
from adaring_jax.adapters import adaring, tensor_ring as tr
from adaring_jax.errors import ConfigError
from adaring_jax.models import clip
from configs import fewshot

MMA_EMBEDDED, MMA_VIT_B16 = 57_600, 674_560


def _config(arg, **fields):
    config = fewshot.get_config(arg)
    config.unlock()
    for key, value in fields.items():
        config.adapter[key] = value
    adaring.check(config)
    return config


# Embedded CLIP: 6 blocks, widths 96 (vision; modes 8, 12) and 64 (text; 8, 8), MLP 384, 256.
@pytest.mark.parametrize("arg,fields,want", [
    # one ring per tower over (layers 6, sites 3, in modes, out modes), every bond 8
    ("ranks=8", dict(sites="q+k+v", ring_modes="layers_sites", start=1),
     64 * (6 + 3 + 20 + 20) + 64 * (6 + 3 + 16 + 16)),
    # a ring per site: 3 sites x (6 + in + out) per tower, bonds 4
    ("ranks=4", dict(sites="q+k+v", ring_modes="layers", start=1),
     16 * 3 * ((6 + 40) + (6 + 32))),
    # lowrank (r = 4): A over (6, 3, in modes, 4) and B over (6, 3, 4, out modes)
    ("ranks=6", dict(sites="q+k+v", ring_modes="layers_sites", update_form="lowrank", start=1),
     36 * 2 * ((6 + 3 + 20 + 4) + (6 + 3 + 16 + 4))),
    # attention (q,k,v,o) at rank 6 and the MLP's fc1, fc2 (a ring each: shapes differ) at 3;
    # 384 -> modes 6, 8, 8 and 256 -> 4, 8, 8 (or 16, 16): each sums as factorize gives them
    ("ranks=6+3", dict(sites="q+k+v+o,fc1+fc2", ring_modes="layers_sites", start=1),
     36 * ((6 + 4 + 40) + (6 + 4 + 32)) + 2 * 6 * 2
     + 9 * 2 * ((6 + 20 + sum(tr.factorize(384, 16))) + (6 + 16 + sum(tr.factorize(256, 16))))),
    # width modes whole
    ("ranks=4", dict(sites="q+k+v", ring_modes="layers_sites", start=1, max_mode=0),
     16 * (6 + 3 + 96 + 96) + 16 * (6 + 3 + 64 + 64)),
])
def test_update_form_parameter_counts_by_formula(arg, fields, want):
    _, total = params_report.report(_config(arg, **fields))
    assert total == want
    assert total <= MMA_EMBEDDED // 10


def test_update_form_on_vit_b16_is_within_ten_percent_of_mma():
    config = _config("arch=vit_b16,ranks=8", sites="q+k+v", ring_modes="layers_sites", start=1)
    _, total = params_report.report(config)
    # 12 blocks; 768 -> 12, 8, 8; 512 -> 8, 8, 8
    assert total == 64 * (12 + 3 + 56) + 64 * (12 + 3 + 48) <= MMA_VIT_B16 // 10


def test_sites_are_checked_and_named():
    with pytest.raises(ConfigError, match="'q\\+gate'.*from q, k, v, o, fc1, fc2"):
        _config("ranks=4", sites="q+gate")
    with pytest.raises(ConfigError, match="names 3 banks' sites for the 2 of config.adapter.ranks"):
        _config("ranks=2+4", sites="q,k,v")
    with pytest.raises(ConfigError, match="ring_modes='sites'.*layers, layers_sites"):
        _config("ranks=4", sites="q", ring_modes="sites")


def _spec(ranks, sites, **kw):
    return adapters.make_spec("adaring", clip.PRESETS["tiny"], 1, 4, ranks=ranks, sites=sites,
                              max_mode=4, **kw)


def _features(model, params, a, spec, pixels, ids):
    layer = adapters.layer_adapters(a, spec)
    return (clip.encode_image(model, params, pixels, layer["vision"]),
            clip.encode_text(model, params, ids, layer["text"]))


@pytest.mark.parametrize("ranks,sites,kw", [
    ((3,), "q+k+v", dict(ring_modes="layers_sites")),
    ((2,), "o+fc1+fc2", dict(ring_modes="layers")),
    ((3,), "q+v", dict(ring_modes="layers_sites", update_form="lowrank", update_rank=2)),
    ((2, 3), "branch,q+k+v+o", dict(ring_modes="layers_sites")),
])
def test_fresh_update_rings_are_exactly_zero_shot_with_nonzero_gradient(tiny, ranks, sites, kw):
    model, params, pixels, ids = tiny
    spec = _spec(ranks, sites, **kw)
    a = adapters.init(spec, 1)
    feats = jax.jit(lambda ap, p, x, t: _features(model, p, ap, spec, x, t))
    img, txt = feats(a, params, pixels, ids)
    np.testing.assert_array_equal(img, clip.encode_image(model, params, pixels))
    np.testing.assert_array_equal(txt, clip.encode_text(model, params, ids))
    g = jax.jit(jax.grad(lambda ap, p, x, t: sum(jnp.sum(f ** 2) for f in feats(ap, p, x, t))))(
        a, params, pixels, ids)
    bank = g[f"bank_{len(ranks) - 1}"]
    ring = "b" if spec.update_form == "lowrank" else "w"
    for tower in ("vision", "text"):  # the zero ring's layer-slice core gets the gradient
        assert all(float(jnp.abs(node[ring]["cores"][0]).max()) > 0
                   for node in bank[tower].values())


def _ring_entry(cores, index):
    """T(i_1, ..., i_d) = trace(Z_1[:, i_1, :] ... Z_d[:, i_d, :]), one entry by a loop."""
    m = np.eye(cores[0].shape[0])
    for z, i in zip(cores, index):
        m = m @ np.asarray(z, np.float64)[:, i, :]
    return np.trace(m)


def test_a_layers_x_sites_ring_materializes_each_layer_and_sites_matrix():
    spec = _spec((2,), "q+k+v", ring_modes="layers_sites")
    a = jax.tree.map(lambda x: x + 0.3, adapters.init(spec, 0))  # no zero core
    layer = adapters.layer_adapters(a, spec)
    cores = a["bank_0"]["vision"]["q+k+v"]["w"]["cores"]
    modes = [c.shape[1] for c in cores]  # (N, S, in modes, out modes)
    n_in = len(tr.factorize(32, 4))
    rng = np.random.default_rng(1)
    for _ in range(20):
        index = [int(rng.integers(0, m)) for m in modes]
        l, s, ins, outs = index[0], index[1], index[2:2 + n_in], index[2 + n_in:]
        row = np.ravel_multi_index(ins, modes[2:2 + n_in])
        col = np.ravel_multi_index(outs, modes[2 + n_in:])
        got = layer["vision"].updates["qkv"[s]].factors[0][l, row, col]
        np.testing.assert_allclose(float(got), _ring_entry(cores, index), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["dense", "lowrank"])
def test_banks_of_different_sites_and_ranks_are_gated_per_layer(form):
    spec = _spec((2, 3), "q+k+v+o,v+fc1", ring_modes="layers_sites", update_form=form,
                 update_rank=2)
    a = jax.tree.map(lambda x: x + 0.2, adapters.init(spec, 0))
    a["gates"] = {t: jnp.asarray(np.random.default_rng(2).standard_normal((4, 2)), jnp.float32)
                  for t in ("vision", "text")}
    got = adapters.layer_adapters(a, spec)["vision"].updates
    banks = adaring.update_weights(a, spec)
    gates = jax.nn.softmax(a["gates"]["vision"], axis=-1)
    assert set(got) == {"q", "k", "v", "o", "fc1"}
    dense = lambda fs: np.asarray(adaring.ru.dense_update(fs))  # noqa: E731
    for site in got:
        want = sum(gates[:, b, None, None] * dense(bank["vision"][site])
                   for b, bank in enumerate(banks) if site in bank["vision"])
        np.testing.assert_allclose(dense(got[site].factors), want, rtol=2e-5, atol=1e-6)


def test_update_diversity_is_zero_for_disjoint_sites_and_one_for_copies():
    diversity = jax.jit(adaring.diversity, static_argnums=1)  # as in the loss: one program
    disjoint = _spec((2, 2), "q+k,v+o", ring_modes="layers_sites")
    a = jax.tree.map(lambda x: x + 0.2, adapters.init(disjoint, 0))
    assert float(diversity(a, disjoint)) == 0.0
    same = _spec((2, 2), "q+k,q+k", ring_modes="layers_sites")
    a = jax.tree.map(lambda x: x + 0.2, adapters.init(same, 0))
    a["bank_1"] = a["bank_0"]
    np.testing.assert_allclose(float(diversity(a, same)), 1.0, rtol=1e-5)
    a["bank_1"] = jax.tree.map(lambda x: x * 0.0, a["bank_1"])  # a zero bank: orthogonal
    assert float(diversity(a, same)) == 0.0


def test_labels_mark_each_rings_first_core_as_the_layer_slices():
    spec = _spec((2,), "q+k+v", ring_modes="layers_sites", update_form="lowrank", update_rank=2)
    labels = adapters.labels(spec)["bank_0"]["vision"]["q+k+v"]
    for ring in ("a", "b"):
        kinds = labels[ring]["cores"]
        assert kinds[0] == adapters.base.LAYER_SLICES
        assert set(kinds[1:]) == {adapters.base.SHARED_CORES}
