"""The training recipes the experiment configs apply on top of `config_args.base_config`.

- `mma`: MMA's (ZjjConan/Multi-Modal-Adapter `configs/trainers/MultiModalAdapter/
  vit_b16_ep5.yaml`; `vit_b16_ep5_imnet.yaml` for ImageNet: batch 128), for real CLIP
  checkpoints. Its values are base_config's defaults; ImageNet's batch is set here.
- `embedded`: the shipped tiny CLIP (`checkpoint=shapes-clip`, 6 blocks per tower), chosen on
  the embedded task (README, "Evidence"): MMA's SGD with 1/alpha-scaled gradients diverged for
  the ring's multiplicative parameters there, AdamW at 1e-2 did not; every method uses it, so
  the comparison is fair.
- `smoke`: seconds on 2 CPU cores: a tiny random CLIP on a little shapes data.
AdaRing's generalization-aware loss weights (any recipe) are GENERALIZATION_LOSS: PromptSRC's
25 / 10 / 1 made training unstable under MMA's 1/alpha gradient scaling (gradient norm
34 -> 3,000 within 24 smoke steps); on the embedded task 0.1 each beat both 1.0 and none.
"""

import ml_collections

from adaring_jax import config_args
from adaring_jax.errors import ConfigError

GENERALIZATION_LOSS = {"text_l1": 0.1, "image_l1": 0.1, "kl": 0.1}
DIVERSITY = 0.1  # AdaRing banks' output similarity
EMBEDDED_RANKS = (2, 4)  # AdaRing's banks on the embedded tiny CLIP


def mma(c, arg):  # noqa: ARG001
    """MMA's values are base_config's defaults (ImageNet's batch: `apply`)."""


def embedded(c, arg):
    c.adapter.start, c.adapter.end = 2, 6  # 5 adapted blocks per tower
    c.adapter.ranks = arg.ranks or EMBEDDED_RANKS
    c.adapter.alpha, c.adapter.unscaled_grads = 0.1, False
    c.optim.name, c.optim.lr, c.optim.weight_decay = "adamw", 0.01, 0.0
    c.optim.schedule = "cosine"  # per step, as the evidence runs were made
    # 32 base classes x 16 shots / batch 16 = 32 steps an epoch. 20 epochs: both methods gain
    # over 10 (fidelity sweep, docs/sweep.md: AdaRing HM 36.8 -> 39.6, MMA 42.0 -> 46.0).
    c.optim.epochs = 20
    if c.method == "adaring":
        # Layer cores (the rings' only layer-specific part) at 4x the rate: +1.1 HM at 10
        # epochs on every tuning seed (docs/sweep.md, ring_lr_layer4).
        c.optim.lr_layer_core = 4.0


def smoke(c, arg):
    if arg.dataset != "shapes":
        raise ConfigError(f"smoke runs on the embedded shapes world; drop dataset={arg.dataset} "
                          "or smoke")
    c.model.arch, c.model.checkpoint = arg.arch or "tiny", ""
    # 2 shots unless asked otherwise (16 is every config's default).
    c.data.shots = 2 if arg.shots == config_args.COMMON_ARGS["shots"] else arg.shots
    c.data.shapes_size = ml_collections.ConfigDict({"train": 256, "val": 64, "test": 128})
    c.data.num_threads = 2
    c.adapter.start, c.adapter.end = 2, 4
    c.optim.batch_size, c.optim.steps, c.optim.schedule = 8, 6, "cosine"
    c.eval.batch_size, c.eval.max_examples = 32, 64
    c.log_every, c.checkpoint_every = 2, 3


RECIPES = {"mma": mma, "embedded": embedded, "smoke": smoke}


def apply(c, arg):
    """The recipe for the config's checkpoint (or `smoke`), and AdaRing's loss weights."""
    if c.method != "mma":
        for k, v in GENERALIZATION_LOSS.items():
            c.loss[k] = v
        c.loss.diversity = DIVERSITY
    name = "smoke" if arg.smoke else "embedded" if c.model.checkpoint == config_args.EMBEDDED \
        else "mma"
    if arg.dataset == "imagenet":
        c.optim.batch_size = 128  # MMA's vit_b16_ep5_imnet.yaml, for every ImageNet run
    RECIPES[name](c, arg)
    c.recipe = "mma" if name == "smoke" else name
    return c
