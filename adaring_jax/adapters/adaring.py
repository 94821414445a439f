"""`adaring`: cross-layer tensor-ring banks mixed by rank (our reconstruction; docs/method.md,
"The cross-layer tensor ring", "Heterogeneous banks and diversity" and "What the rings write").

Each bank is a set of tensor rings whose first core holds the layer-specific slices and whose
other cores are shared by all layers. What a bank's rings write (`sites`, per bank):
- weight updates of the towers' projections q, k, v, o, fc1, fc2 in every adapted block
  (`ring_updates.py`; the default: an attention bank over q, k, v, o and an MLP bank over fc1,
  fc2, chosen by experiments/adaring_search.py);
- or ("branch") MMA's parallel bottleneck: every kernel family, stacked over layers to
  (N, I, O), one ring (I and O split into small modes); Down/Shared biases dense (h per layer)
  by default, the Up bias one (N, d) array shared by the banks (`bias`: BIAS_MODES).
`ranks` gives one ring rank per bank; K > 1 banks are mixed per layer by softmax gates. Because
ReLU acts elementwise, the gated sum of K bottleneck MLPs is one MLP with concatenated Down,
block-diagonal Shared and gate-scaled stacked Up, which is what the towers receive; gated
updates of a site are summed (dense) or concatenated along the rank (low-rank).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from adaring_jax.adapters import base, ring_updates as ru, tensor_ring as tr
from adaring_jax.errors import ConfigError
from adaring_jax.models import clip

# Biases: per layer; one for all layers; none; per layer as a tensor ring over (N, modes of the
# width) with the bank's ranks (the Up bias: the largest bank's), first core zero so the bias
# starts at zero with a gradient. The evidence found no gain over "dense" (experiments/).
BIAS_MODES = ("dense", "shared", "none", "ring")
# The default (experiments/adaring_search.md): two banks of weight-update rings over every
# block of both towers, one writing attention (q, k, v, o: one ring per tower over layers x
# sites, rank 6), one the MLP (fc1, fc2: a ring each, rank 3), mixed per layer by gates.
SITES = "q+k+v+o,fc1+fc2"
UPDATE_RANKS = (6, 3)
# `sites=branch`: the earlier default, rings of MMA's parallel bottleneck (blocks 5-12).
RANKS = (2, 4, 8)  # its banks on CLIP ViT-B/L
EMBEDDED_RANKS = (2, 4)  # its banks on the embedded tiny CLIP (config_args.py)
# The generalization-aware loss AdaRing trains with (docs/method.md, "Generalization-aware loss"). PromptSRC's 25 / 10 / 1
# made training unstable under MMA's 1/alpha gradient scaling (gradient norm 34 -> 3,000 within
# 24 smoke steps); on the embedded task 0.1 each beat both 1.0 and none.
LOSS = {"text_l1": 0.1, "image_l1": 0.1, "kl": 0.1, "diversity": 0.1}


@dataclasses.dataclass(frozen=True)
class Spec(base.Bottleneck):
    ranks: tuple[int, ...] = RANKS  # one TR rank per bank
    max_mode: int = 16  # split wide modes into factors <= max_mode (0: no split)
    bias: str = "dense"  # one of BIAS_MODES
    init_scale: float = 1.0  # ring init std in units of MMA's Kaiming std
    layer_rank: int = 0  # rank of the two bonds of each ring's layer core (0: the bank's)
    # Per bank, what its rings write: ("branch",), the parallel bottleneck MLP, or weight
    # updates of sites in clip.SITES (ring_updates.py). () = every bank the branch.
    bank_sites: tuple[tuple[str, ...], ...] = ()
    ring_modes: str = "layers"  # update rings: one per site, or per layers x sites
    update_form: str = "dense"  # update rings hold dW, or LoRA's A and B ("lowrank")
    update_rank: int = 4  # r of the lowrank form
    mlp_widths: tuple[int, int] = (0, 0)  # (vision, text) MLP widths, for fc1/fc2 updates

    def sites_of(self, bank: int) -> tuple[str, ...]:
        return self.bank_sites[bank] if self.bank_sites else ("branch",)

    def branch_banks(self) -> list[int]:
        return [b for b in range(len(self.ranks)) if self.sites_of(b) == ("branch",)]

    def update_banks(self) -> list[int]:
        return [b for b in range(len(self.ranks)) if self.sites_of(b) != ("branch",)]

    def site_shapes(self) -> dict:
        return ru.site_shapes(self.widths, self.mlp_widths)

    def modes(self, n: int) -> tuple[int, ...]:
        return tr.factorize(n, self.max_mode) if self.max_mode else (n,)

    def bond_ranks(self, rank: int, num_cores: int) -> tuple[int, ...]:
        """Bond ranks of a ring of `num_cores` cores in a bank of `rank`: bond k enters core k,
        so bonds 0 and 1 are the layer core's (`layer_rank` when set), the others `rank`."""
        layer = self.layer_rank or rank
        return (layer, layer) + (rank,) * (num_cores - 2)

    def bias_rows(self) -> int:
        """Rows of a bias array: one per layer, one shared by all, or none."""
        return {"dense": self.num_layers, "shared": 1, "none": 0, "ring": 0}[self.bias]


# ---------------------------------------------------------------------------------------------
# Config


def config_block() -> dict:
    return {
        **base.bottleneck_block(),
        # TR rank per bank; one rank = single AdaRing. 2+4+8 for CLIP ViT-B/L, 2+4 on the
        # embedded tiny CLIP (`recipe`); the config argument ranks=R1+R2+... sets them.
        "ranks": UPDATE_RANKS,
        "max_mode": 16,  # split wide modes into factors <= this (0: off)
        # Biases (Down, Shared, Up): "dense" per layer, "shared" by all layers, "none", or
        # "ring" (per layer, as tensor rings over the layers and the split width).
        "bias": "dense",
        "init_scale": 1.0,  # ring init std in units of MMA's Kaiming std
        # Rank of the two bonds of each ring's layer core, the only layer-specific part
        # (0: the bank's rank); more room for what differs between layers.
        "layer_rank": 0,
        # Learning-rate multipliers of the layer-slice cores (each ring's first core) and of
        # the layer-shared cores (LoRA+-style core-wise rates); biases and gates keep lr.
        "lr_layer_core": 1.0,
        "lr_shared_cores": 1.0,
        # What the rings write: "branch" (MMA's parallel bottleneck, as above) or weight
        # updates of sites joined by "+" from q, k, v, o, fc1, fc2 (e.g. "q+k+v"); for
        # banks that differ, one entry per rank joined by ",", e.g. "q+k+v+o,fc1+fc2" with
        # ranks=6+3 (different adapter types, each with its rank, mixed by the gates).
        "sites": SITES,
        # Update rings: "layers" (a ring per site) or "layers_sites" (sites of one shape
        # share a ring whose second mode indexes them).
        "ring_modes": "layers_sites",
        "update_form": "dense",  # update rings hold dW ("dense") or LoRA's A and B ("lowrank")
        "update_rank": 4,  # r of the lowrank form
    }


def recipe(config, name: str, arg) -> None:
    """The default update rings adapt every block (CLIP-LoRA's placement); `sites=branch`
    keeps the recipe's MMA placement and the earlier banks."""
    sites = arg.sites or SITES
    if not arg.sites and len(arg.ranks) == 1:  # one bank: it writes every default site
        sites = "+".join(s for s in clip.SITES if s in SITES.replace(",", "+").split("+"))
    config.adapter.sites = sites
    if sites == "branch":
        config.adapter.ranks = tuple(arg.ranks) or (EMBEDDED_RANKS if name == "embedded"
                                                    else RANKS)
    else:
        config.adapter.ranks = tuple(arg.ranks) or UPDATE_RANKS
        config.adapter.start = 1
    if name == "embedded":
        # Layer cores (the rings' only layer-specific part) at 4x the rate: +1.1 HM at 10
        # epochs on every tuning seed (experiments/sweep.md, ring_lr_layer4).
        config.adapter.lr_layer_core = 4.0


def check(config) -> None:
    base.check_bottleneck(config)
    check_block(config.adapter)


def check_block(a) -> None:
    """AdaRing's own fields (`make_spec` checks them too, for tools that build blocks)."""
    if not a.ranks:
        raise ConfigError("config.adapter.ranks is empty: give one TR rank per bank, "
                          "e.g. ranks=2+4+8")
    for r in a.ranks:
        base.number("adapter.ranks[...]", r, 1, integer=True)
    base.number("adapter.max_mode", a.max_mode, 0, integer=True)
    if a.bias not in BIAS_MODES:
        raise ConfigError(f"config.adapter.bias={a.bias!r} is not valid; choose from: "
                          f"{', '.join(BIAS_MODES)}")
    base.number("adapter.init_scale", a.init_scale, 0, low_open=True)
    base.number("adapter.layer_rank", a.layer_rank, 0, integer=True)
    for field in ("lr_layer_core", "lr_shared_cores"):
        base.number(f"adapter.{field}", a[field], 0)
    parse_sites(a.sites, len(a.ranks), tuple(a.ranks))
    if a.ring_modes not in ru.RING_MODES:
        raise ConfigError(f"config.adapter.ring_modes={a.ring_modes!r} is not valid; choose "
                          f"from: {', '.join(ru.RING_MODES)}")
    if a.update_form not in ru.FORMS:
        raise ConfigError(f"config.adapter.update_form={a.update_form!r} is not valid; choose "
                          f"from: {', '.join(ru.FORMS)}")
    base.number("adapter.update_rank", a.update_rank, 1, integer=True)
    if a.max_mode == 1:
        raise ConfigError("config.adapter.max_mode=1: modes split into factors <= 1 "
                          "do not exist; use 0 (no splitting) or >= 2")


def parse_sites(text: str, banks: int, ranks=None) -> tuple[tuple[str, ...], ...]:
    """config.adapter.sites -> one site tuple per bank ("branch" or update sites)."""
    entries = [tuple(e.split("+")) for e in str(text).replace(" ", "").split(",")]
    if len(entries) == 1:
        entries = entries * banks
    if len(entries) != banks:
        raise ConfigError(f"config.adapter.sites={text!r} names {len(entries)} banks' sites "
                          f"for the {banks} of config.adapter.ranks={ranks or banks}: give one "
                          "entry, or one per rank joined by ','")
    valid = ("branch", *clip.SITES)
    for e in entries:
        bad = [x for x in e if x not in valid]
        if bad or len(set(e)) != len(e) or ("branch" in e and e != ("branch",)):
            raise ConfigError(f"config.adapter.sites={text!r}: each bank writes 'branch' or "
                              f"distinct sites joined by '+' from {', '.join(clip.SITES)}")
    return tuple(entries)


def make_spec(block, model_config) -> Spec:
    check_block(block)
    sites = parse_sites(block.sites, len(block.ranks))
    return Spec("adaring", base.widths(model_config),
                base.adapted_layers(model_config, block.start, block.end), hidden=block.hidden,
                alpha=block.alpha, unscaled_grads=block.unscaled_grads,
                ranks=tuple(block.ranks), max_mode=block.max_mode, bias=block.bias,
                init_scale=block.init_scale, layer_rank=block.layer_rank,
                bank_sites=() if all(x == ("branch",) for x in sites) else sites,
                ring_modes=block.ring_modes, update_form=block.update_form,
                update_rank=block.update_rank,
                mlp_widths=(model_config.vision.mlp_dim, model_config.text.mlp_dim))


def lr_multipliers(block) -> dict:
    return {base.LAYER_SLICES: block.lr_layer_core, base.SHARED_CORES: block.lr_shared_cores}


# ---------------------------------------------------------------------------------------------
# Initialization


def init(spec: Spec, seed: int) -> base.Params:
    """Fresh params drawn with numpy from `seed` (no compilation; the same on any platform).
    Up cores start with a zero first core, so the adapter output is exactly zero at step 0
    (the adapted model starts as zero-shot CLIP) while every core has a gradient."""
    n = spec.num_layers
    rng = np.random.default_rng([seed, len(spec.ranks)])
    zeros = lambda shape: jnp.zeros(shape, jnp.float32)  # noqa: E731
    params = {}
    rows = spec.bias_rows() if spec.branch_banks() else 0
    for b, rank in enumerate(spec.ranks):
        if b in spec.update_banks():
            params[f"bank_{b}"] = _init_update_bank(rng, spec, b)
            continue
        bank: base.Params = {}
        for (owner, fam), (i, o) in spec.families().items():
            modes = (n, *spec.modes(i), *spec.modes(o))
            entry = {"cores": tr.tr_init(rng, spec.bond_ranks(rank, len(modes)), modes,
                                         spec.init_scale * base.kaiming_fan_out(o),
                                         zero_first=fam == "up")}
            if fam != "up" and rows:
                entry["bias"] = zeros((rows, o))
            elif fam != "up" and spec.bias == "ring":
                entry["bias"] = _bias_ring(rng, spec, rank, o)
            (bank.setdefault(owner, {}) if owner != "shared" else bank)[fam] = entry
        params[f"bank_{b}"] = bank
    if rows:
        params["up_bias"] = {t: zeros((rows, d)) for t, d in zip(base.TOWERS, spec.widths)}
    elif spec.bias == "ring" and spec.branch_banks():
        params["up_bias"] = {t: _bias_ring(rng, spec, max(spec.ranks), d)
                             for t, d in zip(base.TOWERS, spec.widths)}
    if len(spec.ranks) > 1:
        params["gates"] = {t: zeros((n, len(spec.ranks))) for t in base.TOWERS}
    return params


def _update_groups(spec: Spec, bank: int):
    """(tower, group name, sites, (I, O), {ring: modes}) of an update bank's rings."""
    shapes = spec.site_shapes()
    for t in base.TOWERS:
        for g in ru.groups(spec.sites_of(bank), shapes[t], spec.ring_modes):
            io = shapes[t][g[0]]
            yield t, "+".join(g), g, io, ru.ring_shapes(spec.num_layers, g, io, spec.update_form,
                                                         spec.update_rank, spec.modes)


def _init_update_bank(rng, spec: Spec, bank: int) -> base.Params:
    rank = spec.ranks[bank]
    out: base.Params = {}
    for t, name, _, io, modes in _update_groups(spec, bank):
        out.setdefault(t, {})[name] = ru.init_group(
            rng, modes, lambda d: spec.bond_ranks(rank, d), io, spec.init_scale,
            spec.update_rank)
    return out


def _bias_ring(rng, spec: Spec, rank: int, width: int) -> list[jax.Array]:
    """A zero (N, width) bias stack as a tensor ring over (N, modes of width)."""
    modes = (spec.num_layers, *spec.modes(width))
    return tr.tr_init(rng, spec.bond_ranks(rank, len(modes)), modes,
                      base.kaiming_fan_out(width), zero_first=True)


def labels(spec: Spec):
    """Each leaf's kind: a ring's first core carries the layer mode (the layer slices)."""
    def label(path, leaf):
        del leaf
        keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
        if keys[0] == "gates":
            return base.GATES
        if "cores" in keys:
            return base.LAYER_SLICES if keys[keys.index("cores") + 1] == 0 else base.SHARED_CORES
        return base.BIASES
    return jax.tree_util.tree_map_with_path(label, jax.eval_shape(lambda: init(spec, 0)))


# ---------------------------------------------------------------------------------------------
# Materialization: trainable params -> per-layer weight stacks


def bank_weights(params: base.Params, spec: Spec) -> list[dict[str, tuple]]:
    """Per branch bank, per tower: (kernels, biases) of the Down/Shared/Up MLP, stacked over layers,
    each ring contracted to its (N, I, O) stack in one einsum. The Up bias is left out (it is
    shared by the banks; see `layer_adapters`)."""
    fams = spec.families()
    banks = []
    for b in spec.branch_banks():
        bank = params[f"bank_{b}"]

        def weights(owner, fam):
            i, o = fams[(owner, fam)]
            node = bank[fam] if owner == "shared" else bank[owner][fam]
            return tr.tr_layer_weights(node["cores"], spec.modes(i), spec.modes(o))

        shared_w = weights("shared", "shared")
        banks.append({t: ((weights(t, "down"), shared_w, weights(t, "up")),
                          (_layer_bias(bank[t]["down"], spec, spec.hidden),
                           _layer_bias(bank["shared"], spec, spec.hidden), None))
                      for t in base.TOWERS})
    return banks


def _layer_bias(node: base.Params, spec: Spec, width: int) -> jax.Array:
    """(N, width) per-layer biases of a family: its own, broadcast, contracted from its ring,
    or zeros."""
    bias = node.get("bias")
    if bias is None:
        return jnp.zeros((spec.num_layers, width), jnp.float32)
    if isinstance(bias, (list, tuple)):  # bias="ring"
        return tr.tr_full(bias).reshape(spec.num_layers, width)
    return jnp.broadcast_to(bias, (spec.num_layers, width))


def gate_values(params: base.Params, spec: Spec) -> dict[str, jax.Array]:
    """Per tower, (N, K) softmax mixing weights of the banks (all ones for one bank)."""
    if len(spec.ranks) == 1:
        return {t: jnp.ones((spec.num_layers, 1)) for t in base.TOWERS}
    return {t: jax.nn.softmax(params["gates"][t], axis=-1) for t in base.TOWERS}


def _block_diag(blocks: jax.Array) -> jax.Array:
    """(K, N, h, h) -> (N, K*h, K*h), block-diagonal per layer."""
    k, n, h, _ = blocks.shape
    eye = jnp.eye(k, dtype=blocks.dtype)
    return jnp.einsum("kl,knij->nkilj", eye, blocks).reshape(n, k * h, k * h)


def update_weights(params: base.Params, spec: Spec, gates: dict | None = None) -> list[dict]:
    """Per update bank, per tower: {site: factors} materialized from its rings; with `gates`
    (`gate_values`), each bank's dW (dense) or B (lowrank) scaled per layer by its gate."""
    out = []
    for b in spec.update_banks():
        bank = {t: {} for t in base.TOWERS}
        for t, name, g, io, _ in _update_groups(spec, b):
            bank[t].update(ru.materialize(params[f"bank_{b}"][t][name], g, io, spec.update_form,
                                          spec.update_rank,
                                          None if gates is None else gates[t][:, b]))
        out.append(bank)
    return out


def _updates(banks: list[dict], spec: Spec, tower: str) -> dict:
    """{site: clip.Update} of one tower from the gated update banks' factors
    (`update_weights` with gates): dense, the sum of the banks' dW of a site; lowrank, A
    and B concatenated along the rank."""
    sites: dict[str, list] = {}
    for bank in banks:
        for site, factors in bank[tower].items():
            sites.setdefault(site, []).append(factors)
    out = {}
    for site, entries in sites.items():
        if spec.update_form == "dense":
            w = entries[0][0]
            for f in entries[1:]:
                w = w + f[0]
            out[site] = clip.Update((w,))
        else:
            out[site] = clip.Update((jnp.concatenate([f[0] for f in entries], axis=-1),
                                     jnp.concatenate([f[1] for f in entries], axis=1)))
    return out


def layer_adapters(params: base.Params, spec: Spec) -> dict:
    """The pure function from trainable params to what the towers take, per tower."""
    gates = gate_values(params, spec)
    branch = spec.branch_banks()
    banks = bank_weights(params, spec) if branch else []
    # Materialized once for both towers: tracing the rings is most of a step's lowering.
    update_banks = update_weights(params, spec, gates) if spec.update_banks() else []
    out = {}
    for t in base.TOWERS:
        updates = _updates(update_banks, spec, t) if update_banks else {}
        if not branch:
            out[t] = clip.LayerAdapters(layers=spec.layers, updates=updates)
            continue
        g = [gates[t][:, j] for j in branch]
        downs = jnp.concatenate([b[t][0][0] for b in banks], axis=-1)
        shared = _block_diag(jnp.stack([b[t][0][1] for b in banks]))
        ups = jnp.concatenate([g[j][:, None, None] * b[t][0][2]
                               for j, b in enumerate(banks)], axis=1)
        biases = (jnp.concatenate([b[t][1][0] for b in banks], axis=-1),
                  jnp.concatenate([b[t][1][1] for b in banks], axis=-1),
                  _layer_bias({"bias": params["up_bias"][t]} if "up_bias" in params
                              else {}, spec, spec.widths[base.TOWERS.index(t)]))
        a = base.tower_adapters(spec, (downs, shared, ups), biases)
        out[t] = a.replace(updates=updates) if updates else a
    return out


# ---------------------------------------------------------------------------------------------
# The diversity term


def _linear_cka(x: jax.Array, y: jax.Array) -> jax.Array:
    """Linear CKA of (N, P, h) representations over their P rows, per layer: 1 when one is a
    rotation/scaling of the other, 0 when they are uncorrelated."""
    # Centre, then scale to unit Frobenius norm (CKA is scale-free): the epsilon below then
    # only guards an all-constant (dead) representation, whatever the activations' size.
    unit = lambda z: (lambda c: c * jax.lax.rsqrt(jnp.sum(c ** 2, axis=(1, 2), keepdims=True)  # noqa: E731
                                                  + 1e-20))(z - z.mean(axis=1, keepdims=True))
    x, y = unit(x), unit(y)
    cross = jnp.sum(jnp.einsum("npi,npj->nij", x, y) ** 2, axis=(1, 2))
    xx = jnp.sqrt(jnp.sum(jnp.einsum("npi,npj->nij", x, x) ** 2, axis=(1, 2)))
    yy = jnp.sqrt(jnp.sum(jnp.einsum("npi,npj->nij", y, y) ** 2, axis=(1, 2)))
    return cross / (xx * yy + 1e-12)


def diversity(params: base.Params, spec: Spec, num_probes: int = 64) -> jax.Array:
    """How much the heterogeneous banks compute the same thing: linear CKA between the banks'
    bottleneck representations relu(Shared(relu(Down u))) on fixed Gaussian probe inputs u
    (LayerNorm outputs are about unit Gaussian per feature), averaged over bank pairs, layers
    and towers. 0 for one bank; 1 when banks are linear copies of each other.

    Why the bottleneck and not the branch output: the output starts at exactly zero (Up is
    zero-initialized) and any scale-free similarity of near-zero vectors has gradients that
    grow like 1/|output| -- measured here as gradient norms in the thousands. The bottleneck
    is well away from zero from the first step.
    """
    if len(spec.ranks) < 2:
        return jnp.zeros(())
    if spec.update_banks():
        return _update_diversity(params, spec)
    banks = bank_weights(params, spec)
    total, pairs = 0.0, 0
    for t, d in zip(base.TOWERS, spec.widths):
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


def _update_diversity(params: base.Params, spec: Spec) -> jax.Array:
    """For update banks: the mean squared cosine between two banks' updates of the same site
    and layer, over pairs, sites, layers and towers. For a linear map this is the squared
    cosine of the banks' outputs on unit Gaussian inputs (E<dW1 u, dW2 u> = <dW1, dW2>_F), so
    it measures functions, as the branch's CKA does. Banks of disjoint sites: 0, with no
    ring materialized for it (the default's attention and MLP banks). A zero update (the
    start) counts as orthogonal to everything."""
    indices = spec.update_banks()
    if not any(set(spec.sites_of(i)) & set(spec.sites_of(j))
               for n, i in enumerate(indices) for j in indices[n + 1:]):
        return jnp.zeros(())
    banks = update_weights(params, spec)
    terms = []
    for t in base.TOWERS:
        for i in range(len(banks)):
            for j in range(i + 1, len(banks)):
                for site in banks[i][t].keys() & banks[j][t].keys():
                    x = ru.dense_update(banks[i][t][site]).reshape(spec.num_layers, -1)
                    y = ru.dense_update(banks[j][t][site]).reshape(spec.num_layers, -1)
                    dot = jnp.sum(x * y, -1)
                    norms = jnp.sum(x * x, -1) * jnp.sum(y * y, -1)
                    terms.append(jnp.mean(dot ** 2 / (norms + 1e-20)))
    return sum(terms) / len(terms) if terms else jnp.zeros(())


# ---------------------------------------------------------------------------------------------
# TR-SVD from a trained dense bank


def from_dense(mma_params: base.Params, spec: Spec, rel_eps: float | None = 1e-2,
               max_rank: int | None = None) -> tuple[base.Params, dict[str, float],
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
    bank: base.Params = {}
    errors, found = {}, {}
    for (owner, fam), (i, o) in spec.families().items():
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
              "up_bias": {t: jnp.asarray(mma_params[t]["up"]["bias"]) for t in base.TOWERS}}
    return params, errors, found


def warm_start(source: str, params, source_spec, spec: Spec):
    """The same spec continues training; an mma run with the same layers and width is
    compressed by TR-SVD into a one-bank ring of rank R (`from_dense`, capped and padded)."""
    if source == "adaring" and source_spec == spec:
        return params
    same_bank = (source_spec.layers, getattr(source_spec, "hidden", None)) == \
        (spec.layers, spec.hidden)
    if (source == "mma" and len(spec.ranks) == 1 and same_bank and spec.bias == "dense"
            and not spec.update_banks()):
        return from_dense(params, spec, rel_eps=None, max_rank=spec.ranks[0])[0]
    return None


METHOD = base.register(base.Method(
    name="adaring", summary="tensor-ring banks of ranks `ranks`, mixed per layer by gates",
    config_block=config_block, check=check, make_spec=make_spec, init=init,
    layer_adapters=layer_adapters, labels=labels, loss=LOSS,
    regularizers={"diversity": diversity}, lr_multipliers=lr_multipliers,
    warm_start=warm_start, recipe=recipe))
