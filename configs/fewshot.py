r"""Few-shot adaptation of CLIP with AdaRing, MMA, or none (zero-shot).

    python -m adaring_jax.main --config=configs/fewshot.py --workdir=runs/default
      -> the embedded task, offline, ~1.7 min on 2 CPU cores: base-to-novel on the shapes
         world's target domain with the shipped tiny CLIP, 16 shots of the 32 base classes,
         20 epochs, 12,800 + 12,800 test images; zero-shot base 25.23 / novel 25.89 / HM
         25.56, AdaRing 42.08 / 39.61 / 40.81 with 5,160 trainable parameters (seed 1, one
         CPU; 41.63 / 38.92 / 40.23 on another; over seeds 1-3 40.52 +- 0.32, MMA 46.01 +- 0.68:
         experiments/evidence.md)
    python -m adaring_jax.main --config=configs/fewshot.py --config.model.fast_step=True \
        --workdir=runs/fast
      -> the same job with the unrolled train step (model.fast_step): training 1.3x faster on
         2 cores, other rounding, so other digits (seed 1: HM 41.23 where the default gives
         40.64 on the same AVX2 CPU; over seeds 1-3 40.62 +- 0.61 against 40.19 +- 0.63)
    python -m adaring_jax.main --config=configs/fewshot.py:smoke --workdir=runs/smoke
    python -m adaring_jax.main --workdir=runs/pets --config=configs/fewshot.py:protocol=fewshot,\
        dataset=oxford_pets,checkpoint=openai/clip-vit-base-patch16 --config.data.data_dir=DATA
    python -m adaring_jax.params --config=configs/fewshot.py:method=mma,arch=vit_b16
      -> trainable parameters: 674560
    python -m adaring_jax.params --config=configs/fewshot.py:arch=vit_b16
      -> trainable parameters: 30736   (adaring, banks of TR rank 2, 4, 8; 4.6% of MMA)

Arguments (`:key=value,...`): protocol=base2novel|fewshot (all classes), method=zeroshot|mma|
adaring, checkpoint=<HF dir, hub id, or shapes-clip (default)>, arch=<preset: random weights>,
dataset=<name>, shots=<K>, seed=<n>, ranks=2+4+8 (default: 2+4 on shapes-clip, else 2+4+8),
smoke. Pass the checkpoint as an argument, not as --config.model.checkpoint: the adapter
layers and the optimizer follow it.
"""

from adaring_jax import config_args
from adaring_jax import recipes


def get_config(arg=None):
    arg = config_args.parse(arg, **config_args.COMMON_ARGS, protocol="base2novel")
    config = recipes.apply(config_args.base_config(arg.protocol, arg), arg)
    config.lock()
    return config
