"""What every adapter method provides, and the method table that holds them.

A method is one module of this package that builds a `Method` and registers it once
(`register`). The rest of the code asks the table, never the method's name: its config block,
checks, spec, init, materialization into per-layer weights, parameter labels (for the
parameter report and the learning-rate groups), regularizer terms and warm starts.

All bottleneck methods produce the same thing for the CLIP towers: per tower a
`clip.LayerAdapters` with the per-layer MLP `u -> Up(relu(Shared(relu(Down u + b) + b)) + b)`
(docs/method.md, "The base adapter (MMA)") stacked over the adapted layers, applied as `Block_l(x) + alpha * A_l(LN1_l(x))`.

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
from typing import Any, Callable, Mapping

import jax
import ml_collections

from adaring_jax.errors import ConfigError
from adaring_jax.models import clip

TOWERS = ("vision", "text")
Params = dict[str, Any]

# Labels of trainable tensors (`Method.labels`): the parameter report's kinds, in its order,
# and the keys of learning-rate multipliers (`Method.lr_multipliers`).
LAYER_SLICES = "ring cores, layer-specific slices"
SHARED_CORES = "ring cores, layer-shared"
DENSE = "dense kernels"
BIASES = "biases"
GATES = "bank gates"
KINDS = (LAYER_SLICES, SHARED_CORES, DENSE, BIASES, GATES)


@dataclasses.dataclass(frozen=True)
class Spec:
    """Static description of an adapter (hashable: usable as a jit static argument). Every
    method's spec has these fields; a bottleneck method adds its own (`Bottleneck`)."""
    method: str
    widths: tuple[int, int] = (0, 0)  # (vision, text) tower widths
    layers: tuple[int, ...] = ()  # 0-based adapted blocks, the same in both towers

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def first_block(self, tower: str) -> int | None:
        """The first block of `tower` whose input the adapter changes (frozen work below it can
        be shared or cached), None when it leaves the tower as it is."""
        del tower
        return self.layers[0] if self.layers else None


@dataclasses.dataclass(frozen=True)
class Bottleneck(Spec):
    """A Down/Shared/Up bottleneck MLP per adapted layer (MMA's form)."""
    hidden: int = 32  # bottleneck width h
    alpha: float = 0.001  # branch scale
    unscaled_grads: bool = True  # MMA's gradient treatment (see module docstring)

    def families(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(owner, family) -> (I, O) of the kernel family; owner is a tower or 'shared'."""
        out = {}
        for tower, d in zip(TOWERS, self.widths):
            out[(tower, "down")] = (d, self.hidden)
            out[(tower, "up")] = (self.hidden, d)
        out[("shared", "shared")] = (self.hidden, self.hidden)
        return out


def _no_terms() -> Mapping[str, Callable]:
    return {}


@dataclasses.dataclass(frozen=True)
class Method:
    """Everything the rest of the code asks of an adapter method."""
    name: str
    summary: str  # one line, for --help texts and error messages
    # The config block `config.adapter` of this method: {field: default}.
    config_block: Callable[[], dict]
    # Raise ConfigError for a bad field of the block (the whole config is passed).
    check: Callable[[ml_collections.ConfigDict], None]
    # (config.adapter block, clip.CLIPConfig) -> a hashable Spec.
    make_spec: Callable[[ml_collections.ConfigDict, clip.CLIPConfig], Spec]
    # (spec, seed) -> the trainable params: a pytree apart from the frozen backbone.
    init: Callable[[Spec, int], Params]
    # (params, spec) -> {tower: clip.LayerAdapters or None}: what the towers take.
    layer_adapters: Callable[[Params, Spec], dict]
    # (spec) -> a pytree like the params with one of KINDS per leaf.
    labels: Callable[[Spec], Any]
    trains: bool = True  # False: no adapter (zero-shot CLIP)
    # Whether `export` can write it: a Down/Shared/Up bottleneck per layer (export.py's format).
    exportable: bool = True
    # Generalization-aware loss weights this method trains with by default (config.loss).
    loss: Mapping[str, float] = dataclasses.field(default_factory=dict)
    prompt: str = "mma"  # default prompt style of the adapted model (data/prompts.py)
    # (config.adapter block) -> the adapted prompts' template when the method fixes it
    # (CoOp's random context: "X X X X {}."), else None: config.data.prompt's.
    template: Callable[[ml_collections.ConfigDict], str | None] = lambda block: None
    # Regularizer terms: {config.loss field: (params, spec) -> scalar}.
    regularizers: Mapping[str, Callable] = dataclasses.field(default_factory=_no_terms)
    # (config.adapter block) -> {label: learning-rate multiplier}; absent labels: 1.
    lr_multipliers: Callable[[ml_collections.ConfigDict], dict] = lambda block: {}
    # (source method name, source params, source spec, this spec) -> params, or None when
    # this method cannot start from that run (`config.adapter.init_from`, compress).
    warm_start: Callable[[str, Params, Spec, Spec], Params | None] = \
        lambda name, params, source, spec: None
    # (params, spec, model, frozen backbone, tokenizer, config.adapter) -> params: a fresh
    # init that needs the backbone (CoOp's context from the frozen token embeddings).
    backbone_init: Callable = lambda params, spec, model, frozen, tok, block: params
    # (config, recipe name, config arguments): this method's values of a training recipe
    # (config_args.py), applied after the recipe's own.
    recipe: Callable[[ml_collections.ConfigDict, str, ml_collections.ConfigDict], None] = \
        lambda config, recipe, arg: None


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add `method` to the table (once per name)."""
    if method.name in METHODS and METHODS[method.name] is not method:
        raise ValueError(f"adapter method {method.name!r} is registered twice")
    METHODS[method.name] = method
    return method


def get(name: str) -> Method:
    """The method called `name`; an unknown name lists the valid ones."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]


# ---------------------------------------------------------------------------------------------
# Shared by the bottleneck methods


def bottleneck_block() -> dict:
    """The placement and branch fields of every bottleneck method's config block."""
    return {
        "start": 5,  # first adapted block, 1-based (MMA: 5)
        "end": 12,  # last adapted block, 1-based inclusive (MMA: 12)
        "hidden": 32,  # bottleneck width (MMA: 32)
        "alpha": 0.001,  # branch scale (MMA: 0.001)
        "unscaled_grads": True,  # MMA's gradient treatment: adapter grads / alpha
        # A finished run whose adapters start this one (job/runs.initial_adapters): the same
        # spec is copied, another method's run converted when the method can (adaring: an mma
        # run by TR-SVD). With optim.epochs=0 the warm start is evaluated untrained.
        "init_from": "",
    }


def number(field, value, low=None, high=None, low_open=False, integer=False):
    """Raise ConfigError unless `value` is a finite number within [low, high]."""
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or value <= high)
    if not ok:
        bound = [f"{'>' if low_open else '>='} {low}" if low is not None else "",
                 f"<= {high}" if high is not None else ""]
        raise ConfigError(f"config.{field}={value!r} must be {kind} "
                          f"{' and '.join(b for b in bound if b)}".rstrip())


def check_bottleneck(config) -> None:
    a = config.adapter
    number("adapter.start", a.start, 1, integer=True)
    number("adapter.end", a.end, 1, integer=True)
    if a.start > a.end:
        raise ConfigError(f"config.adapter.start={a.start} > config.adapter.end={a.end}: "
                          "the first adapted block must not come after the last")
    number("adapter.hidden", a.hidden, 1, integer=True)
    number("adapter.alpha", a.alpha, 0, low_open=True)


def adapted_layers(model_config: clip.CLIPConfig, start: int, end: int) -> tuple[int, ...]:
    """0-based blocks for start..end, 1-based inclusive as in MMA (5..12 = 0-based 4..11)."""
    depth = min(model_config.vision.layers, model_config.text.layers)
    if end > depth:
        raise ConfigError(f"config.adapter.end={end} is beyond the model's {depth} blocks; "
                          f"adapter layers {start}..{end} (1-based) must lie within 1..{depth}")
    if not 1 <= start <= end:
        raise ConfigError(f"adapter layers {start}..{end} (1-based) must lie within 1..{depth}"
                          " (config.adapter.start/end)")
    return tuple(range(start - 1, end))


def widths(model_config: clip.CLIPConfig) -> tuple[int, int]:
    return (model_config.vision.width, model_config.text.width)


def kaiming_fan_out(out_features: int) -> float:
    """std of PyTorch's kaiming_normal_(mode='fan_out', nonlinearity='relu'), MMA's init."""
    return math.sqrt(2.0 / out_features)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def grad_scale(x, factor: float):
    """Identity in the forward pass; multiplies the incoming gradient by `factor`."""
    return x


def _grad_scale_fwd(x, factor):
    return x, None


def _grad_scale_bwd(factor, _, g):
    return (jax.tree.map(lambda t: t * factor, g),)


grad_scale.defvjp(_grad_scale_fwd, _grad_scale_bwd)


def tower_adapters(spec: Bottleneck, kernels, biases) -> clip.LayerAdapters:
    """One tower's stacked Down/Shared/Up weights as the tower takes them, with MMA's gradient
    treatment when the spec asks for it."""
    if spec.unscaled_grads:
        kernels, biases = grad_scale((tuple(kernels), tuple(biases)), 1.0 / spec.alpha)
    return clip.LayerAdapters(tuple(kernels), tuple(biases), spec.alpha, layers=spec.layers)
