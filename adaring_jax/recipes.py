"""The training recipes the experiment configs apply on top of `config_args.base_config`.

- `mma`: MMA's (ZjjConan/Multi-Modal-Adapter `configs/trainers/MultiModalAdapter/
  vit_b16_ep5.yaml`; `vit_b16_ep5_imnet.yaml` for ImageNet: batch 128), for real CLIP
  checkpoints. Its values are base_config's defaults; ImageNet's batch is set here.
- `embedded`: the shipped tiny CLIP (`checkpoint=shapes-clip`, 6 blocks per tower), chosen on
  the embedded task (README, "Evidence"): MMA's SGD with 1/alpha-scaled gradients diverged for
  the ring's multiplicative parameters there, AdamW at 1e-2 did not; every method uses it, so
  the comparison is fair.
- `smoke`: seconds on 2 CPU cores: a tiny random CLIP on a little shapes data.
A method's own values of a recipe (AdaRing's banks and layer-core rate on the embedded CLIP)
live in its module (`Method.recipe`), its loss weights in `Method.loss`.
"""

import ml_collections

from adaring_jax import adapters, config_args
from adaring_jax.data import own, presets
from adaring_jax.errors import ConfigError


def mma(c, arg):  # noqa: ARG001
    """MMA's values are base_config's defaults (ImageNet's batch: `apply`)."""


def _placement(c, **fields):
    """Set the adapter block's placement fields that the method has (zeroshot: none)."""
    for key, value in fields.items():
        if key in c.adapter:
            c.adapter[key] = value


def embedded(c, arg):
    del arg
    _placement(c, start=2, end=6, alpha=0.1, unscaled_grads=False)  # 5 blocks per tower
    c.optim.name, c.optim.lr, c.optim.weight_decay = "adamw", 0.01, 0.0
    c.optim.schedule = "cosine"  # per step, as the evidence runs were made
    # 32 base classes x 16 shots / batch 16 = 32 steps an epoch. 20 epochs: both methods gain
    # over 10 (fidelity sweep, experiments/sweep.md: AdaRing HM 36.8 -> 39.6, MMA 42.0 -> 46.0).
    c.optim.epochs = 20


def smoke(c, arg):
    if not presets.is_shapes(arg.dataset) and not own.is_own(arg.dataset):
        raise ConfigError(f"smoke runs on the embedded shapes world; drop dataset={arg.dataset} "
                          "or smoke (or use your own data: dataset=folder:PATH)")
    c.model.arch, c.model.checkpoint = arg.arch or "tiny", ""
    # 2 shots unless asked otherwise (16 is every config's default).
    c.data.shots = 2 if arg.shots == config_args.COMMON_ARGS["shots"] else arg.shots
    c.data.shapes_size = ml_collections.ConfigDict({"train": 256, "val": 64, "test": 128})
    c.data.num_threads = 2
    _placement(c, start=2, end=4)
    c.optim.batch_size, c.optim.steps, c.optim.schedule = 8, 6, "cosine"
    c.eval.batch_size, c.eval.max_examples = 32, 64
    c.log_every, c.checkpoint_every = 2, 3


RECIPES = {"mma": mma, "embedded": embedded, "smoke": smoke}


def apply(c, arg):
    """The recipe for the config's checkpoint (or `smoke`), then the method's values of it."""
    name = "smoke" if arg.smoke else "embedded" if c.model.checkpoint == config_args.EMBEDDED \
        else "mma"
    if arg.dataset == "imagenet":
        c.optim.batch_size = 128  # MMA's vit_b16_ep5_imnet.yaml, for every ImageNet run
    RECIPES[name](c, arg)
    adapters.get(c.method).recipe(c, name, arg)
    c.recipe = "mma" if name == "smoke" else name
    return c
