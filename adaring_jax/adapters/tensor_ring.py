"""Tensor-ring (TR) math: pure functions on arrays, no Flax.

A tensor ring (Zhao et al. 2016, "Tensor Ring Decomposition") represents a d-way tensor by cores
`Z_k` of shape `(r_k, n_k, r_{k+1})` with the last rank wrapping to the first:

    T[i_1, ..., i_d] = trace(Z_1[:, i_1, :] @ Z_2[:, i_2, :] @ ... @ Z_d[:, i_d, :])

AdaRing stacks one adapter weight family over its N adapted layers, `W in R^{N x I x O}`,
optionally splits I and O into small modes (768 = 12*8*8), and stores the result as a ring whose
first core carries the layer mode: `Z_1[:, l, :]` is layer l's slice, `Z_2..Z_d` are shared by
all layers.

Contents: `tr_full` (neighbouring cores merged pairwise in the order of `ring_plan`),
`tr_layer_weights` (all N layers' matrices at once), `tr_svd` (sequential SVDs with a ring split,
to ranks or to a relative error), `tr_num_params`, `tr_pad` (zero-padding to given ranks), `factorize` (mode splitting), `tr_init`
(random cores whose full tensor has a given std, whatever the ranks).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Cores = Sequence[jax.Array]


def tr_num_params(cores: Cores) -> int:
    """sum_k r_k * n_k * r_{k+1}; works on arrays or anything with `.shape`."""
    return sum(math.prod(z.shape) for z in cores)


def tr_ranks(cores: Cores) -> tuple[int, ...]:
    """(r_1, ..., r_d): the first rank of each core."""
    return tuple(int(z.shape[0]) for z in cores)


def _check_ring(cores: Cores):
    if len(cores) < 2:
        raise ValueError(f"a tensor ring needs at least 2 cores, got {len(cores)}")
    for k, z in enumerate(cores):
        nxt = cores[(k + 1) % len(cores)]
        if z.ndim != 3 or z.shape[2] != nxt.shape[0]:
            raise ValueError(f"core {k} has shape {tuple(z.shape)}; cores must be (r_k, n_k, "
                             f"r_k+1) with r_k+1 = {nxt.shape[0]} (next core's first rank)")


@functools.lru_cache(maxsize=None)
def ring_plan(shapes: tuple[tuple[int, ...], ...]) -> tuple[dict, int]:
    """How `tr_full` contracts a ring of cores of these shapes: runs of neighbouring cores are
    merged pairwise, a run (r_i, n_i...n_j, r_j+1) kept as a 3-way tensor, and the ring is
    closed by contracting the run [0, m] with [m+1, d-1] over both bonds. Returns ({(i, j):
    (multiply-adds, split k of [i, j] into [i, k] + [k+1, j])}, m), the splits the cheapest
    (dynamic programming over runs; searched once per process per shape signature).

    Merging only neighbours keeps every intermediate a (bond, modes, bond) matrix stack: each
    step is one plain product, with no transpose of a many-way tensor, which is what XLA spent
    its compile time on in a general einsum path (the two cost the same flops on every ring
    of B/32, B/16 and L/14: tests/test_tensor_ring.py)."""
    d = len(shapes)
    r = [s[0] for s in shapes]
    n = [s[1] for s in shapes]
    size = lambda i, j: math.prod(n[i:j + 1])  # noqa: E731
    best = {(i, i): (0, None) for i in range(d)}
    for length in range(2, d + 1):
        for i in range(d - length + 1):
            j = i + length - 1
            best[(i, j)] = min(
                (best[(i, k)][0] + best[(k + 1, j)][0]
                 + r[i] * size(i, k) * r[k + 1] * size(k + 1, j) * r[(j + 1) % d], k)
                for k in range(i, j))
    close = min((best[(0, m)][0] + best[(m + 1, d - 1)][0]
                 + r[0] * size(0, m) * r[m + 1] * size(m + 1, d - 1), m) for m in range(d - 1))
    return best, close[1]


def plan_cost(shapes: tuple[tuple[int, ...], ...]) -> int:
    """Multiply-adds of `tr_full` on a ring of cores of these shapes (`ring_plan`)."""
    best, m = ring_plan(shapes)
    d, r = len(shapes), [s[0] for s in shapes]
    outer = (r[0] * math.prod(s[1] for s in shapes[:m + 1]) * r[m + 1]
             * math.prod(s[1] for s in shapes[m + 1:]))
    return best[(0, m)][0] + best[(m + 1, d - 1)][0] + outer


def _contract(cores, einsum, reshape):
    """The full tensor of a ring by `ring_plan`, with the array functions given (jax or
    numpy)."""
    shapes = tuple(tuple(int(n) for n in z.shape) for z in cores)
    best, m = ring_plan(shapes)

    def run(i, j):
        if i == j:
            return cores[i]
        k = best[(i, j)][1]
        a, b = run(i, k), run(k + 1, j)
        return reshape(einsum("apb,bqc->apqc", a, b), (a.shape[0], -1, b.shape[2]))

    full = einsum("apb,bqa->pq", run(0, m), run(m + 1, len(cores) - 1))
    return reshape(full, [s[1] for s in shapes])


def tr_full(cores: Cores, precision=jax.lax.Precision.HIGHEST) -> jax.Array:
    """The full tensor (n_1, ..., n_d) of a ring, contracted as `ring_plan` says."""
    _check_ring(cores)
    return _contract(cores, functools.partial(jnp.einsum, precision=precision), jnp.reshape)


def tr_layer_weights(cores: Cores, in_modes: Sequence[int], out_modes: Sequence[int],
                     precision=jax.lax.Precision.HIGHEST) -> jax.Array:
    """All N layers' (I, O) matrices of a weight family from its ring.

    cores[0] is (r_1, N, r_2), the layer-specific slices; cores[1:] cover in_modes then
    out_modes (I = prod(in_modes), O = prod(out_modes)), shared by all layers.
    Returns (N, I, O), contracted by `tr_full`.
    """
    modes = (*in_modes, *out_modes)
    if tuple(z.shape[1] for z in cores[1:]) != tuple(modes):
        raise ValueError(f"shared cores have modes {[z.shape[1] for z in cores[1:]]}; expected "
                         f"{list(modes)} (in {list(in_modes)} + out {list(out_modes)})")
    full = tr_full(cores, precision)
    return full.reshape(full.shape[0], math.prod(in_modes), math.prod(out_modes))


def factorize(n: int, max_mode: int) -> tuple[int, ...]:
    """Split n into as few, as balanced factors as possible, each <= max_mode where the primes
    allow; largest first. 768 -> (12, 8, 8) and 512 -> (8, 8, 8) for max_mode=16; 32 -> (8, 4)
    for max_mode=8. A prime larger than max_mode stays whole; n <= max_mode stays one mode."""
    if n < 1 or max_mode < 2:
        raise ValueError(f"cannot factorize {n} into modes <= {max_mode}")
    if n <= max_mode:
        return (n,)
    primes, m, p = [], n, 2
    while p * p <= m:
        while m % p == 0:
            primes.append(p)
            m //= p
        p += 1
    if m > 1:
        primes.append(m)
    count = max(1, math.ceil(math.log(n) / math.log(max_mode) - 1e-9))
    while True:
        bins = [1] * count
        for q in sorted(primes, reverse=True):  # largest prime into the smallest bin
            i = min(range(count), key=lambda j: bins[j])
            bins[i] *= q
        if all(b <= max_mode or b in primes for b in bins) or count >= len(primes):
            return tuple(sorted((b for b in bins if b > 1), reverse=True))
        count += 1


def tr_init(rng: np.random.Generator, ranks: Sequence[int], modes: Sequence[int], std: float,
            zero_first: bool = False) -> list[jax.Array]:
    """Random Gaussian cores whose full tensor has entries of standard deviation `std`.

    An entry of the full tensor is a sum of prod(r_k) products of d independent core entries,
    so its variance is prod(r_k) * prod(s_k^2). With s_k = std^(1/d) / sqrt(r_k) that is std^2
    for any ranks: changing a rank does not change the scale of the materialized weights.
    zero_first: the first (layer-slice) core is zero, so the full tensor is exactly zero while
    the gradient with respect to that core is not. Drawn with numpy on the host: initialization
    then compiles nothing (threefry sampling of many small arrays takes seconds to compile).
    """
    if len(ranks) != len(modes):
        raise ValueError(f"{len(ranks)} ranks for {len(modes)} modes")
    d = len(modes)
    cores = []
    for k in range(d):
        shape = (ranks[k], modes[k], ranks[(k + 1) % d])
        s = std ** (1.0 / d) / math.sqrt(ranks[k])
        core = s * rng.standard_normal(shape)
        cores.append(jnp.asarray(np.zeros(shape) if zero_first and k == 0 else core,
                                 jnp.float32))
    return cores


# ---------------------------------------------------------------------------------------------
# TR-SVD


def _truncate(s: np.ndarray, delta: float, max_rank: int | None) -> int:
    """Smallest rank whose discarded singular values have norm <= delta, capped at max_rank."""
    tail = np.sqrt(np.cumsum((s ** 2)[::-1]))[::-1]  # tail[i] = ||s[i:]||
    rank = int(np.searchsorted(-tail, -delta, side="right")) if delta > 0 else len(s)
    rank = max(1, min(rank, len(s)))
    return rank if max_rank is None else max(1, min(rank, max_rank))


def _split(r: int) -> tuple[int, int]:
    """r = r_1 * r_2 with r_1 <= r_2 as close as possible."""
    r1 = int(math.isqrt(r))
    while r % r1:
        r1 -= 1
    return r1, r // r1


def _split_capped(r: int, cap1: int, cap2: int) -> tuple[int, int]:
    """The smallest r_1 * r_2 >= r with r_1 <= cap1 and r_2 <= cap2 (r <= cap1 * cap2), most
    balanced first: the first unfolding's rank, padded with zero singular values if needed."""
    best = min(((a * -(-r // a), abs(a - -(-r // a)), a) for a in range(1, cap1 + 1)
                if -(-r // a) <= cap2))
    return best[2], best[0] // best[2]


def tr_pad(cores: Cores, ranks: Sequence[int]) -> list[jax.Array]:
    """The same ring with bond k widened to ranks[k] by zeros (the full tensor is unchanged:
    the product of zero-padded blocks is the zero-padded product, and the trace skips the
    padding). Gives a ring of data-dependent ranks the uniform shape a spec asks for."""
    _check_ring(cores)
    if len(ranks) != len(cores) or any(r < z.shape[0] for r, z in zip(ranks, cores)):
        raise ValueError(f"cannot pad ranks {tr_ranks(cores)} to {tuple(ranks)}")
    d = len(cores)
    # numpy, then one transfer: eager jnp.pad would compile a program per core shape (compress
    # tries every rank up to the one it keeps).
    return [jnp.asarray(np.pad(np.asarray(z), ((0, ranks[k] - z.shape[0]), (0, 0),
                                               (0, ranks[(k + 1) % d] - z.shape[2]))))
            for k, z in enumerate(cores)]


def tr_svd(x, rel_eps: float | None = None, ranks: Sequence[int] | None = None) -> list[np.ndarray]:
    """Decompose a dense tensor into a ring (Zhao et al. 2016, TR-SVD).

    Sequential truncated SVDs: the first unfolding's rank R is split as r_1 * r_2 (closest
    factors), then each following unfolding is truncated in turn. With `rel_eps`, truncation
    budgets are sqrt(2) * eps * |x| / sqrt(d) for the first SVD and eps * |x| / sqrt(d) after,
    so |tr_full(cores) - x|_F <= rel_eps * |x|_F. With `ranks` = (r_1, ..., r_d) as caps
    (r_1 * r_2 for the first SVD), the result has at most those ranks (a first rank that does
    not factor within the caps is padded with zero singular values); give both to get the
    smaller of the two. Runs in float64 numpy (ranks are data-dependent); returns float32 cores.
    """
    x = np.asarray(x, np.float64)
    d = x.ndim
    if d < 2:
        raise ValueError(f"TR-SVD needs a tensor of order >= 2, got shape {x.shape}")
    if rel_eps is None and ranks is None:
        raise ValueError("give rel_eps, ranks, or both")
    if ranks is not None and len(ranks) != d:
        raise ValueError(f"{len(ranks)} ranks for a tensor of order {d}")
    norm = float(np.linalg.norm(x))
    eps = 0.0 if rel_eps is None else rel_eps
    delta = eps * norm / math.sqrt(d)
    n = x.shape

    u, s, vt = np.linalg.svd(x.reshape(n[0], -1), full_matrices=False)
    cap = None if ranks is None else ranks[0] * ranks[1]
    rank = _truncate(s, math.sqrt(2) * delta, cap)
    if ranks is not None:  # both factors within their caps; zero singular values pad r1 * r2
        r1, r2 = _split_capped(rank, ranks[0], ranks[1])
        u = np.pad(u[:, :rank], ((0, 0), (0, r1 * r2 - rank)))
        s = np.pad(s[:rank], (0, r1 * r2 - rank))
        vt = np.pad(vt[:rank], ((0, r1 * r2 - rank), (0, 0)))
        rank = r1 * r2
    else:
        r1, r2 = _split(rank)
    first = u[:, :rank].reshape(n[0], r1, r2).transpose(1, 0, 2)
    # Remainder (r_1, r_2, n_2 ... n_d) -> (r_2, n_2 ... n_d, r_1): the ring closes on r_1.
    rest = (s[:rank, None] * vt[:rank]).reshape(r1, r2, -1)
    rest = np.moveaxis(rest, 0, -1).reshape(r2, *n[1:], r1)
    cores = [first]
    r = r2
    for k in range(1, d - 1):
        u, s, vt = np.linalg.svd(rest.reshape(r * n[k], -1), full_matrices=False)
        rank = _truncate(s, delta, None if ranks is None else ranks[k + 1])
        cores.append(u[:, :rank].reshape(r, n[k], rank))
        rest = (s[:rank, None] * vt[:rank]).reshape(rank, *n[k + 1:], r1)
        r = rank
    cores.append(rest.reshape(r, n[-1], r1))
    return [c.astype(np.float32) for c in cores]


def relative_error(cores: Cores, x) -> float:
    """|tr_full(cores) - x|_F / |x|_F, the ring contracted in float64 numpy (no program to
    compile per ring shape; compress measures every rank it tries)."""
    _check_ring(cores)
    full = _contract([np.asarray(c, np.float64) for c in cores], np.einsum, np.reshape)
    x = np.asarray(x, np.float64)
    return float(np.linalg.norm(full - x) / np.linalg.norm(x))
