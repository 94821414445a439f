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


def get_config(arg=None):
    """Assembled in one place: adaring_jax/config_args.py `build`; tested on every other
    benchmark dataset."""
    return config_args.build(
        "cross_dataset", arg, {"dataset": "imagenet"},
        eval_datasets=lambda c: [d for d in presets.BENCHMARK if d != c.data.dataset])
