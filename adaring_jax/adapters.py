"""Adapter methods: the MMA dense bank, AdaRing tensor-ring banks, and their heterogeneous mix.

All methods produce the same thing for the CLIP towers: per tower, a `clip.LayerAdapters` with
the per-layer MLP `u -> Up(relu(Shared(relu(Down u + b) + b)) + b)` (DESIGN.md 1.1) stacked over
the adapted layers, applied as `Block_l(x) + alpha * A_l(LN1_l(x))`.

- `mma`: dense Down (d -> h) and Up (h -> d) per tower and layer, a Shared (h -> h) projection
  common to both towers at the same depth, all with bias; MMA's init (Kaiming normal, fan_out,
  zero biases).
- `adaring`: every kernel family, stacked over layers to (N, I, O), is a tensor ring whose first
  core holds the layer-specific slices and whose other cores (I and O split into small modes)
  are shared by all layers. Down/Shared biases are dense (h per layer) by default; the Up bias
  is one (N, d) array shared by the banks (`bias`: BIAS_MODES). `ranks` gives one ring rank per
  bank: K = 1 is single AdaRing; K > 1 mixes the banks per layer with softmax gates. Because ReLU acts elementwise, the gated sum
  of K bottleneck MLPs is one MLP with concatenated Down, block-diagonal Shared and gate-scaled
  stacked Up, which is what the towers receive.
- `zeroshot`: no adapters.

MMA's gradient treatment: MMA scales the branch by alpha in the forward pass and divides the
gradient by alpha on the way back into the adapter, so the adapter weights see the gradient of an
unscaled branch while the backbone's activations get their exact gradient. We get the same
gradients by passing the materialized weights through `grad_scale(w, 1/alpha)` (identity forward,
gradient times 1/alpha) and letting the tower apply alpha normally (`unscaled_grads=True`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaring_jax import tensor_ring as tr
from adaring_jax.models import clip

METHODS = ("zeroshot", "mma", "adaring")
# adaring biases: per layer; one for all layers; none; per layer as a tensor ring over
# (N, modes of the width) with the bank's ranks (the Up bias: the largest bank's), first core
# zero so the bias starts at zero with a gradient.
BIAS_MODES = ("dense", "shared", "none", "ring")
TOWERS = ("vision", "text")
Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class AdapterSpec:
    """Static description of an adapter bank (hashable: usable as a jit static argument)."""
    method: str
    widths: tuple[int, int]  # (vision, text) tower widths
    layers: tuple[int, ...]  # 0-based adapted blocks, the same in both towers (Shared pairs them)
    hidden: int = 32  # bottleneck width h
    alpha: float = 0.001  # branch scale
    unscaled_grads: bool = True  # MMA's gradient treatment (see module docstring)
    ranks: tuple[int, ...] = (2, 4, 8)  # adaring: one TR rank per bank
    max_mode: int = 16  # adaring: split wide modes into factors <= max_mode (0: no split)
    bias: str = "dense"  # adaring: one of BIAS_MODES
    init_scale: float = 1.0  # adaring: ring init std in units of MMA's Kaiming std
    layer_rank: int = 0  # adaring: rank of the two bonds of each ring's layer core (0: the bank's)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.method != "zeroshot" and not self.layers:
            raise ValueError(f"method {self.method!r} needs at least one adapted layer")
        if self.method == "adaring" and (not self.ranks or min(self.ranks) < 1):
            raise ValueError(f"adaring ranks must be positive integers, got {self.ranks}")
        if self.layer_rank < 0:
            raise ValueError(f"layer_rank must be >= 0 (0: the bank's rank), got {self.layer_rank}")
        if self.bias not in BIAS_MODES:
            raise ValueError(f"unknown bias mode {self.bias!r}; valid: {', '.join(BIAS_MODES)}")

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def modes(self, n: int) -> tuple[int, ...]:
        return tr.factorize(n, self.max_mode) if self.max_mode else (n,)

    def bond_ranks(self, rank: int, num_cores: int) -> tuple[int, ...]:
        """Bond ranks of a ring of `num_cores` cores in a bank of `rank`: bond k enters core k,
        so bonds 0 and 1 are the layer core's (`layer_rank` when set), the others `rank`."""
        layer = self.layer_rank or rank
        return (layer, layer) + (rank,) * (num_cores - 2)

    def bias_rows(self) -> int:
        """Rows of an adaring bias array: one per layer, one shared by all, or none."""
        return {"dense": self.num_layers, "shared": 1, "none": 0, "ring": 0}[self.bias]

    def families(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(owner, family) -> (I, O) of the kernel family; owner is a tower or 'shared'."""
        out = {}
        for tower, d in zip(TOWERS, self.widths):
            out[(tower, "down")] = (d, self.hidden)
            out[(tower, "up")] = (self.hidden, d)
        out[("shared", "shared")] = (self.hidden, self.hidden)
        return out


def make_spec(method: str, model_config: clip.CLIPConfig, start: int, end: int, **kwargs
              ) -> AdapterSpec:
    """Spec for blocks start..end, 1-based inclusive as in MMA (5..12 = 0-based 4..11)."""
    depth = min(model_config.vision.layers, model_config.text.layers)
    if method != "zeroshot" and not 1 <= start <= end <= depth:
        raise ValueError(f"adapter layers {start}..{end} (1-based) must lie within 1..{depth}")
    layers = tuple(range(start - 1, end)) if method != "zeroshot" else ()
    return AdapterSpec(method, (model_config.vision.width, model_config.text.width), layers,
                       **kwargs)


# ---------------------------------------------------------------------------------------------
# Initialization


def _kaiming_fan_out(out_features: int) -> float:
    """std of PyTorch's kaiming_normal_(mode='fan_out', nonlinearity='relu'), MMA's init."""
    return math.sqrt(2.0 / out_features)


def init(spec: AdapterSpec, seed: int) -> Params:
    """Fresh trainable adapter parameters (a pytree apart from the frozen backbone), drawn
    with numpy from `seed` (no compilation; deterministic on any platform)."""
    n = spec.num_layers
    fams = spec.families()
    if spec.method == "zeroshot":
        return {}
    rng = np.random.default_rng([seed, len(spec.ranks)])
    normal = lambda std, shape: jnp.asarray(std * rng.standard_normal(shape), jnp.float32)
    zeros = lambda shape: jnp.zeros(shape, jnp.float32)
    if spec.method == "mma":
        params: Params = {}
        for (owner, fam), (i, o) in fams.items():
            node = params.setdefault(owner, {}) if owner != "shared" else params
            node[fam] = {"kernel": normal(_kaiming_fan_out(o), (n, i, o)), "bias": zeros((n, o))}
        return params
    params = {}
    rows = spec.bias_rows()
    for b, rank in enumerate(spec.ranks):
        bank: Params = {}
        for (owner, fam), (i, o) in fams.items():
            modes = (n, *spec.modes(i), *spec.modes(o))
            entry = {"cores": tr.tr_init(rng, spec.bond_ranks(rank, len(modes)), modes,
                                         spec.init_scale * _kaiming_fan_out(o),
                                         zero_first=fam == "up")}
            if fam != "up" and rows:
                entry["bias"] = zeros((rows, o))
            elif fam != "up" and spec.bias == "ring":
                entry["bias"] = _bias_ring(rng, spec, rank, o)
            (bank.setdefault(owner, {}) if owner != "shared" else bank)[fam] = entry
        params[f"bank_{b}"] = bank
    if rows:
        params["up_bias"] = {t: zeros((rows, d)) for t, d in zip(TOWERS, spec.widths)}
    elif spec.bias == "ring":
        params["up_bias"] = {t: _bias_ring(rng, spec, max(spec.ranks), d)
                             for t, d in zip(TOWERS, spec.widths)}
    if len(spec.ranks) > 1:
        params["gates"] = {t: zeros((n, len(spec.ranks))) for t in TOWERS}
    return params


def _bias_ring(rng, spec: AdapterSpec, rank: int, width: int) -> list[jax.Array]:
    """A zero (N, width) bias stack as a tensor ring over (N, modes of width)."""
    modes = (spec.num_layers, *spec.modes(width))
    return tr.tr_init(rng, spec.bond_ranks(rank, len(modes)), modes, _kaiming_fan_out(width),
                      zero_first=True)


def param_shapes(spec: AdapterSpec) -> Params:
    return jax.eval_shape(lambda: init(spec, 0))


def count(spec: AdapterSpec) -> int:
    """Trainable parameters, from shapes alone."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(param_shapes(spec)))


# ---------------------------------------------------------------------------------------------
# Materialization: trainable params -> per-layer weight stacks


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def grad_scale(x, factor: float):
    """Identity in the forward pass; multiplies the incoming gradient by `factor`."""
    return x


def _grad_scale_fwd(x, factor):
    return x, None


def _grad_scale_bwd(factor, _, g):
    return (jax.tree.map(lambda t: t * factor, g),)


grad_scale.defvjp(_grad_scale_fwd, _grad_scale_bwd)


def bank_weights(params: Params, spec: AdapterSpec) -> list[dict[str, tuple]]:
    """Per bank, per tower: (kernels, biases) of the Down/Shared/Up MLP, stacked over layers.

    `mma` is one bank; `adaring` has one per rank, each ring contracted to its (N, I, O) stack
    in one einsum. The Up bias is left out of adaring banks (it is shared; see `layer_adapters`).
    """
    if spec.method == "mma":
        shared = params["shared"]
        return [{t: ((params[t]["down"]["kernel"], shared["kernel"], params[t]["up"]["kernel"]),
                     (params[t]["down"]["bias"], shared["bias"], params[t]["up"]["bias"]))
                 for t in TOWERS}]
    fams = spec.families()
    banks = []
    for b in range(len(spec.ranks)):
        bank = params[f"bank_{b}"]

        def weights(owner, fam):
            i, o = fams[(owner, fam)]
            node = bank[fam] if owner == "shared" else bank[owner][fam]
            return tr.tr_layer_weights(node["cores"], spec.modes(i), spec.modes(o))

        shared_w = weights("shared", "shared")
        banks.append({t: ((weights(t, "down"), shared_w, weights(t, "up")),
                          (_layer_bias(bank[t]["down"], spec, spec.hidden),
                           _layer_bias(bank["shared"], spec, spec.hidden), None))
                      for t in TOWERS})
    return banks


def _layer_bias(node: Params, spec: AdapterSpec, width: int) -> jax.Array:
    """(N, width) per-layer biases of an adaring family: its own, broadcast, contracted from
    its ring, or zeros."""
    bias = node.get("bias")
    if bias is None:
        return jnp.zeros((spec.num_layers, width), jnp.float32)
    if isinstance(bias, (list, tuple)):  # bias="ring"
        return tr.tr_full(bias).reshape(spec.num_layers, width)
    return jnp.broadcast_to(bias, (spec.num_layers, width))


def gate_values(params: Params, spec: AdapterSpec) -> dict[str, jax.Array]:
    """Per tower, (N, K) softmax mixing weights of the banks (all ones for one bank)."""
    k = len(spec.ranks) if spec.method == "adaring" else 1
    if k == 1:
        return {t: jnp.ones((spec.num_layers, 1)) for t in TOWERS}
    return {t: jax.nn.softmax(params["gates"][t], axis=-1) for t in TOWERS}


def _block_diag(blocks: jax.Array) -> jax.Array:
    """(K, N, h, h) -> (N, K*h, K*h), block-diagonal per layer."""
    k, n, h, _ = blocks.shape
    eye = jnp.eye(k, dtype=blocks.dtype)
    return jnp.einsum("kl,knij->nkilj", eye, blocks).reshape(n, k * h, k * h)


def layer_adapters(params: Params, spec: AdapterSpec) -> dict[str, clip.LayerAdapters | None]:
    """The pure function from trainable params to what the towers take, per tower."""
    if spec.method == "zeroshot":
        return {t: None for t in TOWERS}
    banks = bank_weights(params, spec)
    gates = gate_values(params, spec)
    out = {}
    for t in TOWERS:
        if spec.method == "mma":
            kernels, biases = banks[0][t]
        else:
            downs = jnp.concatenate([b[t][0][0] for b in banks], axis=-1)
            shared = _block_diag(jnp.stack([b[t][0][1] for b in banks]))
            ups = jnp.concatenate([gates[t][:, j, None, None] * b[t][0][2]
                                   for j, b in enumerate(banks)], axis=1)
            kernels = (downs, shared, ups)
            biases = (jnp.concatenate([b[t][1][0] for b in banks], axis=-1),
                      jnp.concatenate([b[t][1][1] for b in banks], axis=-1),
                      _layer_bias({"bias": params["up_bias"][t]} if "up_bias" in params
                                  else {}, spec, spec.widths[TOWERS.index(t)]))
        if spec.unscaled_grads:
            kernels, biases = grad_scale((kernels, biases), 1.0 / spec.alpha)
        out[t] = clip.LayerAdapters(tuple(kernels), tuple(biases), spec.alpha, layers=spec.layers)
    return out


def _linear_cka(x: jax.Array, y: jax.Array) -> jax.Array:
    """Linear CKA of (N, P, h) representations over their P rows, per layer: 1 when one is a
    rotation/scaling of the other, 0 when they are uncorrelated."""
    # Centre, then scale to unit Frobenius norm (CKA is scale-free): the epsilon below then
    # only guards an all-constant (dead) representation, whatever the activations' size.
    unit = lambda z: (lambda c: c * jax.lax.rsqrt(jnp.sum(c ** 2, axis=(1, 2), keepdims=True)
                                                  + 1e-20))(z - z.mean(axis=1, keepdims=True))
    x, y = unit(x), unit(y)
    cross = jnp.sum(jnp.einsum("npi,npj->nij", x, y) ** 2, axis=(1, 2))
    xx = jnp.sqrt(jnp.sum(jnp.einsum("npi,npj->nij", x, x) ** 2, axis=(1, 2)))
    yy = jnp.sqrt(jnp.sum(jnp.einsum("npi,npj->nij", y, y) ** 2, axis=(1, 2)))
    return cross / (xx * yy + 1e-12)


def diversity(params: Params, spec: AdapterSpec, num_probes: int = 64) -> jax.Array:
    """How much the heterogeneous banks compute the same thing: linear CKA between the banks'
    bottleneck representations relu(Shared(relu(Down u))) on fixed Gaussian probe inputs u
    (LayerNorm outputs are about unit Gaussian per feature), averaged over bank pairs, layers
    and towers. 0 for one bank; 1 when banks are linear copies of each other.

    Why the bottleneck and not the branch output: the output starts at exactly zero (Up is
    zero-initialized) and any scale-free similarity of near-zero vectors has gradients that
    grow like 1/|output| -- measured here as gradient norms in the thousands. The bottleneck
    is well away from zero from the first step.
    """
    if spec.method != "adaring" or len(spec.ranks) < 2:
        return jnp.zeros(())
    banks = bank_weights(params, spec)
    total, pairs = 0.0, 0
    for t, d in zip(TOWERS, spec.widths):
        probes = jax.random.normal(jax.random.key(17), (num_probes, d))
        reps = []
        for b in banks:
            (down, shared, _), (bd, bs, _) = b[t]
            h = jax.nn.relu(jnp.einsum("pi,nio->npo", probes, down) + bd[:, None])
            reps.append(jax.nn.relu(jnp.einsum("npi,nio->npo", h, shared) + bs[:, None]))
        for i in range(len(reps)):
            for j in range(i + 1, len(reps)):
                total = total + jnp.mean(_linear_cka(reps[i], reps[j]))
                pairs += 1
    return total / pairs


# ---------------------------------------------------------------------------------------------
# TR-SVD initialization from a trained dense bank


def from_dense(mma_params: Params, spec: AdapterSpec, rel_eps: float | None = 1e-2,
               max_rank: int | None = None) -> tuple[Params, dict[str, float],
                                                      dict[str, tuple[int, ...]]]:
    """A trained `mma` bank -> single-bank `adaring` params by TR-SVD of each kernel family.

    Each (N, I, O) stack is tensorized with `spec`'s modes and decomposed to `rel_eps` and/or
    capped at `max_rank`. Without a cap the ranks come out of the data and may be unequal (the
    materialization reads ranks from core shapes); with one, every bond is zero-padded to
    `max_rank` (`tr.tr_pad`, exact), so the params have the shapes of `spec` with ranks
    (max_rank,) and load, train and checkpoint like any adaring run. Biases are copied.
    Returns the params, the relative Frobenius error per family ('vision/down', ...,
    'shared') and the ranks TR-SVD found per family (before padding).
    """
    if spec.bias != "dense":
        raise ValueError(f"from_dense keeps MMA's per-layer biases: it needs bias='dense', "
                         f"not {spec.bias!r}")
    fams = spec.families()
    bank: Params = {}
    errors, found = {}, {}
    for (owner, fam), (i, o) in fams.items():
        node = mma_params[fam] if owner == "shared" else mma_params[owner][fam]
        w = jnp.asarray(node["kernel"])
        modes = (spec.num_layers, *spec.modes(i), *spec.modes(o))
        ranks = None if max_rank is None else spec.bond_ranks(max_rank, len(modes))
        cores = tr.tr_svd(w.reshape(modes), rel_eps=rel_eps, ranks=ranks)
        name = fam if owner == "shared" else f"{owner}/{fam}"
        errors[name] = tr.relative_error(cores, w.reshape(modes))
        found[name] = tr.tr_ranks(cores)
        entry = {"cores": tr.tr_pad(cores, ranks) if ranks else [jnp.asarray(c) for c in cores]}
        if fam != "up":
            entry["bias"] = jnp.asarray(node["bias"])
        (bank.setdefault(owner, {}) if owner != "shared" else bank)[fam] = entry
    params = {"bank_0": bank,
              "up_bias": {t: jnp.asarray(mma_params[t]["up"]["bias"]) for t in TOWERS}}
    return params, errors, found


def spec_from_config(config, model_config: clip.CLIPConfig) -> AdapterSpec:
    """The AdapterSpec of an experiment config (`config.method`, `config.adapter`)."""
    a = config.adapter
    return make_spec(config.method, model_config, a.start, a.end, hidden=a.hidden,
                     alpha=a.alpha, unscaled_grads=a.unscaled_grads, ranks=tuple(a.ranks),
                     max_mode=a.max_mode, bias=a.get("bias", "dense"),
                     init_scale=a.get("init_scale", 1.0), layer_rank=a.get("layer_rank", 0))
