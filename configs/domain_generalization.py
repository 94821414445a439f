r"""Domain generalization (CoOp protocol): train on ImageNet (16 shots), test on ImageNet-V2,
-Sketch, -A and -R (A and R on their 200-class subsets).

    python -m adaring_jax.main \
        --config=configs/domain_generalization.py:checkpoint=openai/clip-vit-base-patch16 \
        --config.data.data_dir=DATA \
        --workdir=runs/dg/seed1

Arguments as in configs/fewshot.py (dataset defaults to imagenet here).
"""

from adaring_jax import config_args
from adaring_jax.data import presets
from adaring_jax import recipes


def get_config(arg=None):
    arg = config_args.parse(arg, **{**config_args.COMMON_ARGS, "dataset": "imagenet"})
    config = recipes.apply(config_args.base_config("domain_generalization", arg), arg)
    config.data.eval_datasets = presets.DOMAIN_TARGETS
    config.lock()
    return config
