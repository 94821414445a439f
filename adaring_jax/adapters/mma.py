"""`mma`: MMA's dense bank (Multi-Modal Adapter, CVPR 2024; docs/method.md, "The base adapter (MMA)").

Per tower and adapted layer a Down (d -> h) and an Up (h -> d) projection, and a Shared
(h -> h) projection common to both towers at the same depth, all with bias; MMA's init
(Kaiming normal, fan_out; zero biases). ViT-B/16: 84,320 parameters per layer x 8 = 674,560.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from adaring_jax.adapters import base


Spec = base.Bottleneck
STREAM = 3  # the init draws from numpy's default_rng([seed, STREAM]), apart from other methods'


def config_block() -> dict:
    return base.bottleneck_block()


def make_spec(block, model_config) -> Spec:
    return Spec("mma", base.widths(model_config),
                base.adapted_layers(model_config, block.start, block.end), hidden=block.hidden,
                alpha=block.alpha, unscaled_grads=block.unscaled_grads)


def init(spec: Spec, seed: int) -> base.Params:
    """Fresh params drawn with numpy from `seed` (no compilation; the same on any platform)."""
    rng = np.random.default_rng([seed, STREAM])
    n = spec.num_layers
    params: base.Params = {}
    for (owner, fam), (i, o) in spec.families().items():
        node = params.setdefault(owner, {}) if owner != "shared" else params
        node[fam] = {"kernel": jnp.asarray(base.kaiming_fan_out(o) * rng.standard_normal(
            (n, i, o)), jnp.float32), "bias": jnp.zeros((n, o), jnp.float32)}
    return params


def layer_adapters(params: base.Params, spec: Spec) -> dict:
    shared = params["shared"]
    return {t: base.tower_adapters(
        spec, (params[t]["down"]["kernel"], shared["kernel"], params[t]["up"]["kernel"]),
        (params[t]["down"]["bias"], shared["bias"], params[t]["up"]["bias"]))
        for t in base.TOWERS}


def labels(spec: Spec):
    kinds = {"kernel": base.DENSE, "bias": base.BIASES}
    tree = {t: {fam: dict(kinds) for fam in ("down", "up")} for t in base.TOWERS}
    tree["shared"] = dict(kinds)
    return tree


def warm_start(source: str, params, source_spec, spec):
    """A finished mma run of the same spec continues training."""
    return params if source == "mma" and source_spec == spec else None


METHOD = base.register(base.Method(
    name="mma", summary="MMA's dense Down/Shared/Up bank (674,560 parameters on ViT-B/16)",
    config_block=config_block, check=base.check_bottleneck,
    make_spec=make_spec, init=init, layer_adapters=layer_adapters, labels=labels,
    warm_start=warm_start))
