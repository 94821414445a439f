"""Tensor rings that write weight updates of the towers' projections (AdaRing's update form).

A bank of the update form writes updates of some `clip.SITES` (q, k, v, o, fc1, fc2) in every
adapted block of both towers. Its sites are grouped into rings:
- `modes="layers"`: one ring per site, over (N, width modes of I, width modes of O);
- `modes="layers_sites"`: sites of the same (I, O) share one ring over (N, S, modes...), the
  site mode S indexing the matrix type (one ring for q, k, v and o, as one tensor train
  indexes layers and matrix types in MetaTT).
The ring's first core holds the layer-specific slices (`Z_1[:, l, :]`); the site core and the
width cores are shared by all layers. Two forms of the update a ring holds:
- `dense`: the ring is the stacked dense update dW (N, [S,] I, O) itself (FacT's view of the
  stacked ViT updates as one low-rank tensor); the towers add `x dW`;
- `lowrank`: two rings hold the stacked LoRA factors A (N, [S,] I, r) and B (N, [S,] r, O);
  the towers add `x A B`.
The layer core of the ring that holds dW (or B) starts at zero, so the adapted model starts as
the frozen CLIP while every core gets a gradient from the second step on (the layer core from
the first). Pure functions: params -> per-site stacked factors.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from adaring_jax.adapters import tensor_ring as tr
from adaring_jax.models import clip

FORMS = ("dense", "lowrank")
RING_MODES = ("layers", "layers_sites")


def site_shapes(widths: Sequence[int], mlp_widths: Sequence[int]) -> dict[str, dict]:
    """{tower: {site: (I, O)}} for towers of these widths and MLP widths."""
    out = {}
    for tower, d, m in zip(("vision", "text"), widths, mlp_widths):
        out[tower] = {s: {"fc1": (d, m), "fc2": (m, d)}.get(s, (d, d)) for s in clip.SITES}
    return out


def groups(sites: Sequence[str], shapes: dict, ring_modes: str) -> list[tuple[str, ...]]:
    """The sites' rings: one per site, or one per (I, O) shape (in the order of `sites`)."""
    if ring_modes == "layers":
        return [(s,) for s in sites]
    by_shape: dict = {}
    for s in sites:
        by_shape.setdefault(shapes[s], []).append(s)
    return [tuple(g) for g in by_shape.values()]


def ring_shapes(n: int, group: tuple[str, ...], io: tuple[int, int], form: str, rank: int,
                split) -> dict[str, tuple[int, ...]]:
    """{ring name: modes} of one group: "w" (dense) or "a" and "b" (lowrank); `split(x)` gives
    the modes of a width x."""
    lead = (n, len(group)) if len(group) > 1 else (n,)
    i, o = io
    if form == "dense":
        return {"w": (*lead, *split(i), *split(o))}
    return {"a": (*lead, *split(i), rank), "b": (*lead, rank, *split(o))}


def init_group(rng: np.random.Generator, modes: dict, bonds, io: tuple[int, int],
               init_scale: float, rank: int) -> dict:
    """Cores of one group's rings. dW and A are scaled like a Kaiming-uniform map of fan-in I
    (std 1/sqrt(I), LoRA's A); B like 1/sqrt(r); the ring holding dW or B starts at zero."""
    out = {}
    for name, m in modes.items():
        std = (1.0 / math.sqrt(rank) if name == "b" else 1.0 / math.sqrt(io[0])) * init_scale
        out[name] = {"cores": tr.tr_init(rng, bonds(len(m)), m, std, zero_first=name != "a")}
    return out


def materialize(node: dict, group: tuple[str, ...], io: tuple[int, int], form: str,
                rank: int, layer_scale: jax.Array | None = None) -> dict[str, tuple[jax.Array, ...]]:
    """{site: factors} of one group: (dW,) with dW (N, I, O), or (A, B). `layer_scale` (N,)
    scales layer l's update (dW or B) through the ring's layer core, whose slice l is the only
    layer-specific part: the same product as scaling the (N, I, O) stack, at the cost of an
    (r, N, r) multiply."""
    i, o = io
    s = len(group)

    def full(name, shape):
        cores = node[name]["cores"]
        if layer_scale is not None and name in ("w", "b"):
            cores = [cores[0] * layer_scale[None, :, None], *cores[1:]]
        t = tr.tr_full(cores)
        t = t.reshape(t.shape[0], s, *shape)  # (N, S, ...) also when S = 1
        return [t[:, j] for j in range(s)]

    if form == "dense":
        return {site: (w,) for site, w in zip(group, full("w", (i, o)))}
    return {site: (a, b) for site, a, b in zip(group, full("a", (i, rank)), full("b", (rank, o)))}


def dense_update(factors: Sequence[jax.Array]) -> jax.Array:
    """The (N, I, O) update a factor chain applies."""
    w = factors[0]
    for f in factors[1:]:
        w = jnp.einsum("nij,njk->nik", w, f)
    return w


def num_params(n: int, sites: Sequence[str], shapes: dict, ring_modes: str, form: str,
               rank: int, update_rank: int, split, bonds) -> int:
    """The parameters of one tower's rings in one bank, by formula: sum_k r_k n_k r_{k+1}."""
    total = 0
    for g in groups(sites, shapes, ring_modes):
        for m in ring_shapes(n, g, shapes[g[0]], form, update_rank, split).values():
            b = bonds(len(m))
            total += sum(b[k] * m[k] * b[(k + 1) % len(m)] for k in range(len(m)))
    del rank
    return total
