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


def get_config(arg=None):
    """Assembled in one place: adaring_jax/config_args.py `build`; tested on ImageNet's four
    shifted variants."""
    return config_args.build("domain_generalization", arg, {"dataset": "imagenet"},
                             eval_datasets=lambda c: presets.DOMAIN_TARGETS)
