"""Tensor-ring math against explicit loops, TR-SVD error bounds, gradients, initialization."""

import itertools
import math
import string

import jax
import jax.numpy as jnp
import numpy as np
import opt_einsum
import pytest
from jax.test_util import check_grads

from adaring_jax import adapters
from adaring_jax.adapters import tensor_ring as tr
from adaring_jax.models import convert
from configs import fewshot


def _random_ring(seed, ranks, modes):
    rng = np.random.default_rng(seed)
    d = len(modes)
    return [jnp.asarray(rng.standard_normal((ranks[k], modes[k], ranks[(k + 1) % d])),
                        jnp.float32) for k in range(d)]


def _loop_full(cores):
    """The TR definition, one index tuple at a time."""
    cores = [np.asarray(c, np.float64) for c in cores]
    modes = [c.shape[1] for c in cores]
    out = np.zeros(modes)
    for idx in itertools.product(*map(range, modes)):
        m = np.eye(cores[0].shape[0])
        for c, i in zip(cores, idx):
            m = m @ c[:, i, :]
        out[idx] = np.trace(m)
    return out


@pytest.mark.parametrize("ranks,modes", [((2, 3, 4), (3, 4, 5)),
                                         ((3, 1, 2, 4), (2, 3, 2, 3)),
                                         ((2, 5, 3, 1, 4), (3, 2, 2, 3, 2))])
def test_tr_full_matches_the_definition(ranks, modes):
    cores = _random_ring(0, ranks, modes)
    np.testing.assert_allclose(tr.tr_full(cores), _loop_full(cores), rtol=1e-5, atol=1e-4)
    assert tr.tr_num_params(cores) == sum(
        ranks[k] * modes[k] * ranks[(k + 1) % len(modes)] for k in range(len(modes)))


def test_layer_weights_are_the_reshaped_full_tensor():
    cores = _random_ring(1, (2, 3, 2, 4), (5, 6, 4, 2))  # N=5 layers, I=6, O=4*2
    w = tr.tr_layer_weights(cores, (6,), (4, 2))
    assert w.shape == (5, 6, 8)
    full = _loop_full(cores)
    np.testing.assert_allclose(w[3], full[3].reshape(6, 8), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"expected \[6, 8\]"):
        tr.tr_layer_weights(cores, (6,), (8,))


def test_ring_shape_errors_name_the_core():
    cores = _random_ring(2, (2, 3, 4), (3, 4, 5))
    cores[1] = cores[1][:, :, :2]
    with pytest.raises(ValueError, match=r"core 1 has shape \(3, 4, 2\)"):
        tr.tr_full(cores)


def test_gradients_through_layer_weight_contraction():
    cores = _random_ring(3, (2, 3, 2, 2), (3, 4, 2, 3))
    f = lambda *cs: jnp.sum(jnp.sin(tr.tr_layer_weights(cs, (4, 2), (3,))))
    with jax.default_matmul_precision("highest"):
        check_grads(f, tuple(cores), order=2, modes=("fwd", "rev"), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("eps", [0.5, 0.2, 0.05, 1e-3])
def test_tr_svd_meets_its_error_bound_on_random_tensors(eps):
    x = np.random.default_rng(4).standard_normal((6, 7, 8, 5))
    cores = tr.tr_svd(x, rel_eps=eps)
    assert tr.relative_error(cores, x) <= eps * (1 + 1e-5)


def test_tr_svd_recovers_a_low_rank_ring():
    true = _random_ring(5, (2, 2, 2, 2), (8, 9, 10, 11))
    x = np.asarray(tr.tr_full(true), np.float64)
    cores = tr.tr_svd(x, rel_eps=1e-6)
    assert tr.relative_error(cores, x) < 1e-5
    # TR-SVD finds r_1 * r_2 = 4 exactly; the ring split mixes the first two bonds, so later
    # ranks are only bounded by r_1^2 * r_k = 8. The ring is still far smaller than the tensor.
    assert tr.tr_ranks(cores)[0] * tr.tr_ranks(cores)[1] == 4
    assert max(tr.tr_ranks(cores)) <= 8
    assert tr.tr_num_params(cores) < x.size / 5


def test_tr_svd_rank_caps():
    x = np.random.default_rng(6).standard_normal((6, 7, 8))
    cores = tr.tr_svd(x, ranks=(2, 3, 4))
    assert tr.tr_ranks(cores) == (2, 3, 4)
    assert 0 < tr.relative_error(cores, x) < 1
    with pytest.raises(ValueError, match="give rel_eps, ranks, or both"):
        tr.tr_svd(x)


@pytest.mark.parametrize("ranks", [(2, 2, 2, 2), (8, 8, 8, 8), (3, 6, 2, 5)])
def test_init_scale_does_not_depend_on_ranks(ranks):
    # Entries share cores, so one draw's spread fluctuates; the expected square does not.
    mean_sq = np.mean([np.mean(np.asarray(tr.tr_full(tr.tr_init(
        np.random.default_rng(seed), ranks, (8, 12, 8, 8), std=0.25))) ** 2) for seed in range(30)])
    assert abs(np.sqrt(mean_sq) / 0.25 - 1) < 0.1, np.sqrt(mean_sq)


def test_zero_first_core_gives_zero_tensor_with_nonzero_gradient():
    cores = tr.tr_init(np.random.default_rng(1), (3, 3, 3), (4, 5, 6), std=1.0, zero_first=True)
    assert float(jnp.abs(tr.tr_full(cores)).max()) == 0.0
    g = jax.grad(lambda c: jnp.sum(tr.tr_full(c) * jnp.arange(120.0).reshape(4, 5, 6)))(cores)
    assert float(jnp.abs(g[0]).sum()) > 0


@pytest.mark.parametrize("n,max_mode,want", [(768, 16, (12, 8, 8)), (512, 16, (8, 8, 8)),
                                             (32, 8, (8, 4)), (32, 32, (32,)), (97, 16, (97,)),
                                             (1024, 16, (16, 8, 8))])
def test_factorize(n, max_mode, want):
    got = tr.factorize(n, max_mode)
    assert got == want and math.prod(got) == n


def _search(shapes, optimize):
    """opt_einsum's contraction path of a ring of cores of these shapes (the reference)."""
    bonds, modes = string.ascii_lowercase, string.ascii_uppercase
    d = len(shapes)
    spec = ",".join(bonds[k] + modes[k] + bonds[(k + 1) % d] for k in range(d)) + "->" + modes[:d]
    return opt_einsum.contract_path(spec, *shapes, shapes=True, optimize=optimize)


def _rings(arg: str) -> set:
    """The core shapes of every ring of a config's adapters."""
    c = fewshot.get_config(arg)
    spec = adapters.spec_from_config(c, convert.architecture(c.model.arch, c.model.checkpoint))
    rings = set()

    def visit(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "cores":
                    rings.add(tuple(tuple(int(n) for n in z.shape) for z in v))
                else:
                    visit(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                visit(v)
    visit(jax.eval_shape(lambda: adapters.init(spec, 0)))
    return rings


@pytest.mark.parametrize("arch", ["embedded", "vit_b32", "vit_b16", "vit_l14"])
def test_ring_plans_cost_what_opt_einsum_finds(arch):
    """Merging neighbouring cores only (`ring_plan`) costs the flops of opt_einsum's
    exhaustive search (its dynamic programming above 7 cores), within 5%, on every ring of
    the update and the branch form; and tr_full matches a plain einsum."""
    for sites in ("", ",sites=branch"):
        arg = ("" if arch == "embedded" else f"arch={arch},") + "method=adaring" + sites
        for ring in _rings(arg):
            want = int(_search(ring, "optimal" if len(ring) <= 7 else "dp")[1].opt_cost)
            assert 2 * tr.plan_cost(ring) <= 1.05 * want, (arch, sites, ring)
    rng = np.random.default_rng(0)
    cores = [rng.standard_normal(s).astype(np.float32) for s in ((3, 5, 2), (2, 4, 4),
                                                                 (4, 3, 1), (1, 6, 3))]
    want = np.einsum("aAb,bBc,cCd,dDa->ABCD", *cores)
    np.testing.assert_allclose(np.asarray(tr.tr_full([jnp.asarray(c) for c in cores])), want,
                               rtol=1e-5, atol=1e-5)
