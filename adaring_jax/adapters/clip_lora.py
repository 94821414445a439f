"""`clip_lora`: low-rank updates of the attention projections q, k, v of every block of both
towers (CLIP-LoRA, Zanella & Ben Ayed, CVPRW 2024; MaxZanella/CLIP-LoRA at commit 358f0d7).

Each adapted projection W of width d becomes `W x + scale * B A dropout(x)`, A (r x d), B
(d x r), as the reference's LoRA layer computes it (`loralib/layers.py` L200-204: dropout on the
input of the low-rank path only). Its defaults are the reference's (`run_utils.py` L32-37):
rank 2, alpha 1, dropout 0.25, q, k and v, every block ("position all"), both encoders; the
scale is alpha / sqrt(r) (`loralib/layers.py` L42). Init (L67-68): A Kaiming-uniform with
a = sqrt(5) (uniform in +-1/sqrt(d)), B zero, so training starts from zero-shot CLIP.
ViT-B/16: 12 x 3 x 2 x 2 x (768 + 512) = 184,320 parameters.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from adaring_jax.adapters import base
from adaring_jax.errors import ConfigError
from adaring_jax.models import clip

TARGETS = ("q", "k", "v")


@dataclasses.dataclass(frozen=True)
class Spec(base.Spec):
    rank: int = 2
    alpha: float = 1.0
    dropout: float = 0.25

    @property
    def scale(self) -> float:
        return self.alpha / math.sqrt(self.rank)


def config_block() -> dict:
    return {
        "start": 1,  # first adapted block, 1-based (CLIP-LoRA: every block)
        "end": 12,  # last adapted block, 1-based inclusive
        "rank": 2,  # r of every low-rank update (CLIP-LoRA: 2)
        "alpha": 1.0,  # updates scaled by alpha / sqrt(r) (CLIP-LoRA: alpha 1)
        "dropout": 0.25,  # dropout on the input of the low-rank path, training only
        "init_from": "",  # a finished clip_lora run of the same spec to continue
    }


def recipe(config, name: str, arg) -> None:
    """CLIP-LoRA's placement (every block) on any CLIP, and its optimization on real ones
    (`run_utils.py` L28-30, `lora.py` L73-76): AdamW lr 2e-4, weight decay 1e-2, cosine to
    1e-6 per iteration over 500 x shots iterations, batch 32."""
    del arg
    config.adapter.start = 1
    if name == "mma":  # a real CLIP checkpoint
        o = config.optim
        o.name, o.lr, o.weight_decay, o.schedule = "adamw", 2e-4, 1e-2, "cosine"
        o.min_lr, o.batch_size = 1e-6, 32
        o.steps = 500 * max(config.data.shots, 1)


def check(config) -> None:
    a = config.adapter
    base.number("adapter.start", a.start, 1, integer=True)
    base.number("adapter.end", a.end, 1, integer=True)
    if a.start > a.end:
        raise ConfigError(f"config.adapter.start={a.start} > config.adapter.end={a.end}")
    base.number("adapter.rank", a.rank, 1, integer=True)
    base.number("adapter.alpha", a.alpha, 0, low_open=True)
    base.number("adapter.dropout", a.dropout, 0, 1)
    if a.dropout == 1:
        raise ConfigError("config.adapter.dropout=1 drops every input of the low-rank path")


def make_spec(block, model_config) -> Spec:
    return Spec("clip_lora", base.widths(model_config),
                base.adapted_layers(model_config, block.start, block.end), rank=block.rank,
                alpha=block.alpha, dropout=block.dropout)


def init(spec: Spec, seed: int) -> base.Params:
    """A per target uniform in +-1/sqrt(width) (torch's kaiming_uniform_ with a = sqrt(5) on a
    (r, width) weight), B zero; drawn with numpy from `seed`."""
    rng = np.random.default_rng([seed, 7])
    n, r = spec.num_layers, spec.rank
    params = {}
    for tower, d in zip(base.TOWERS, spec.widths):
        bound = 1.0 / math.sqrt(d)
        params[tower] = {t: {"a": jnp.asarray(rng.uniform(-bound, bound, (n, d, r)), jnp.float32),
                             "b": jnp.zeros((n, r, d), jnp.float32)} for t in TARGETS}
    return params


def layer_adapters(params: base.Params, spec: Spec) -> dict:
    """Each target's (A, B) as a low-rank update of its projection, scaled and dropped out as
    the reference's LoRA layer does."""
    return {tower: clip.LayerAdapters(
        layers=spec.layers, dropout=spec.dropout,
        updates={t: clip.Update((params[tower][t]["a"], params[tower][t]["b"]), spec.scale)
                 for t in TARGETS}) for tower in base.TOWERS}


def labels(spec: Spec):
    return {tower: {t: {"a": base.DENSE, "b": base.DENSE} for t in TARGETS}
            for tower in base.TOWERS}


METHOD = base.register(base.Method(
    name="clip_lora", summary="CLIP-LoRA: rank-2 updates of q, k, v in every block of both towers",
    config_block=config_block, check=check, make_spec=make_spec, init=init,
    layer_adapters=layer_adapters, labels=labels, recipe=recipe, exportable=False,
    warm_start=lambda name, params, source, spec: params if (name, source) == ("clip_lora",
                                                                                spec) else None))
