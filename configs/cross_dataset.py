r"""Cross-dataset transfer (CoOp protocol): train on ImageNet (all classes, 16 shots), test on
ImageNet and the other 10 datasets of the suite.

    python -m adaring_jax.main \
        --config=configs/cross_dataset.py:checkpoint=openai/clip-vit-base-patch16 \
        --config.data.data_dir=DATA \
        --workdir=runs/xd/seed1

Arguments as in configs/fewshot.py (dataset defaults to imagenet here).
"""

from adaring_jax import config_args
from adaring_jax.data import presets
from adaring_jax import recipes


def get_config(arg=None):
    arg = config_args.parse(arg, **{**config_args.COMMON_ARGS, "dataset": "imagenet"})
    config = recipes.apply(config_args.base_config("cross_dataset", arg), arg)
    config.data.eval_datasets = tuple(d for d in presets.BENCHMARK if d != config.data.dataset)
    config.lock()
    return config
