"""Adapter methods and the method table (`METHODS`), one module per method:

- `zeroshot`: no adapter (the frozen CLIP);
- `mma`: MMA's dense Down/Shared/Up bank;
- `adaring`: cross-layer tensor-ring banks of several ranks, mixed per layer;
- `clip_lora`: CLIP-LoRA's low-rank updates of q, k, v in every block of both towers;
- `coop`: CoOp's learned context vectors in the class prompts.

The functions below answer for any registered method, so nothing outside this package needs
to know which method runs. Adding a method: write its module (see `base.Method`), call
`base.register` in it and import it below.
"""

from __future__ import annotations

import math

import jax

# The methods register themselves on import, in the order listed and offered.
from adaring_jax.adapters import zeroshot, mma, adaring, clip_lora, coop  # noqa: F401,I001
from adaring_jax.adapters.base import (KINDS, METHODS, TOWERS, Method, Params, Spec, get,
                                       register)
from adaring_jax.adapters.zeroshot import NONE

__all__ = ["KINDS", "METHODS", "NONE", "TOWERS", "Method", "Params", "Spec", "count", "get",
           "init", "labels", "layer_adapters", "make_spec", "param_shapes", "register",
           "regularizer_terms", "spec_from_config"]


def spec_from_config(config, model_config) -> Spec:
    """The spec of an experiment config (`config.method`, `config.adapter`)."""
    return get(config.method).make_spec(config.adapter, model_config)


def make_spec(method: str, model_config, start: int = 1, end: int = 1, **fields) -> Spec:
    """A spec from a method name, the adapted blocks start..end (1-based, inclusive) and the
    method's own config fields (defaults otherwise): for tests and tools."""
    import ml_collections  # noqa: PLC0415 - only tools build blocks by hand
    m = get(method)
    block = ml_collections.ConfigDict(m.config_block())
    for key, value in {"start": start, "end": end, **fields}.items():
        if key in block:
            block[key] = value
        elif key not in ("start", "end"):
            raise ValueError(f"{method} has no config field {key!r}; its fields: "
                             f"{', '.join(block) or 'none'}")
    return m.make_spec(block, model_config)


def init(spec: Spec, seed: int) -> Params:
    """Fresh trainable params of `spec`'s method."""
    return get(spec.method).init(spec, seed)


def layer_adapters(params: Params, spec: Spec) -> dict:
    """Per tower, the `clip.LayerAdapters` (or None) the towers take."""
    return get(spec.method).layer_adapters(params, spec)


def param_shapes(spec: Spec) -> Params:
    return jax.eval_shape(lambda: init(spec, 0))


def count(spec: Spec) -> int:
    """Trainable parameters, from shapes alone."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(param_shapes(spec)))


def labels(spec: Spec):
    """A pytree like the params holding each tensor's kind (one of KINDS)."""
    return get(spec.method).labels(spec)


def regularizer_terms(params: Params, spec: Spec, weights) -> dict:
    """The method's regularizer terms whose loss weight is non-zero."""
    return {name: term(params, spec)
            for name, term in get(spec.method).regularizers.items() if weights.get(name, 0.0)}
