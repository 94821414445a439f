r"""Base-to-novel generalization (CoOp protocol): train on the first ceil(n/2) classes with K
shots, test on base and novel classes, report their harmonic mean.

    python -m adaring_jax.main \
        --config=configs/base2novel.py:dataset=dtd,seed=1,checkpoint=openai/clip-vit-base-patch16 \
        --config.data.data_dir=DATA \
        --workdir=runs/b2n/dtd/seed1
    python -m adaring_jax.main --config=configs/base2novel.py:smoke --workdir=runs/b2n_smoke

Arguments as in configs/fewshot.py.
"""

from adaring_jax import config_args


def get_config(arg=None):
    """Assembled in one place: adaring_jax/config_args.py `build`."""
    return config_args.build("base2novel", arg)
