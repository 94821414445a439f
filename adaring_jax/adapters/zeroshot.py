"""`zeroshot`: no adapter. The frozen CLIP classifies with its class prompts; nothing trains.

Zero-shot is this one method everywhere: the zero-shot row of every run is evaluated with
`NONE` (its spec) and `{}` (its params), and a zero-shot run records the same.
"""

from __future__ import annotations

from adaring_jax.adapters import base


def layer_adapters(params, spec):
    del params, spec
    return {t: None for t in base.TOWERS}


METHOD = base.register(base.Method(
    name="zeroshot", summary="no adapter: the frozen CLIP's zero-shot classifier",
    config_block=dict, check=lambda config: None,
    make_spec=lambda block, model_config: NONE,
    init=lambda spec, seed: {}, layer_adapters=layer_adapters, labels=lambda spec: {},
    trains=False, prompt="coop"))

NONE = base.Spec(METHOD.name)  # the spec of "no adapter"
