r"""Few-shot adaptation of CLIP (all classes, K shots) with AdaRing, MMA, or none (zero-shot).

    python -m adaring_jax.main --config=configs/fewshot.py:smoke --workdir=runs/smoke
    python -m adaring_jax.main --config=configs/fewshot.py:dataset=oxford_pets,shots=16 \
        --config.model.checkpoint=openai/clip-vit-base-patch16 --workdir=runs/pets
    python -m adaring_jax.params --config=configs/fewshot.py:method=mma,arch=vit_b16
      -> trainable parameters: 674560
    python -m adaring_jax.params --config=configs/fewshot.py:arch=vit_b16
      -> trainable parameters: 30736   (adaring, banks of TR rank 2, 4, 8; 4.6% of MMA)

Arguments (`:key=value,...`): method=zeroshot|mma|adaring, arch=<preset: random weights>,
checkpoint=<HF dir or hub id>, dataset=<name>, shots=<K>, seed=<n>, ranks=2+4+8, smoke.
"""

from adaring_jax import config_args


def get_config(arg=None):
    arg = config_args.parse(arg, **config_args.COMMON_ARGS, protocol="base2novel")
    config = config_args.base_config(arg.protocol, arg)
    config.lock()
    return config
