r"""Few-shot adaptation of CLIP with AdaRing, MMA, or none (zero-shot).

    python -m adaring_jax.main --config=configs/fewshot.py --workdir=runs/default
      -> the embedded task, offline, ~1-2 min on 2 CPU cores: base-to-novel on the shapes
         world's target domain with the shipped tiny CLIP, 16 shots of the 32 base classes,
         20 epochs, 12,800 + 12,800 test images; zero-shot base 25.23 / novel 25.89 / HM
         25.56, AdaRing (weight-update rings: attention rank 6 + MLP rank 3, every block)
         46.94 / 46.12 / 46.53 with 5,172 trainable parameters (seed 1, an AVX-512 AMD
         EPYC, 2026-12-05; XLA's float sums differ between CPUs, expect about +-1 HM)
    python -m adaring_jax.main --config=configs/fewshot.py:sites=branch --workdir=runs/branch
      -> the earlier default, rings of MMA's bottleneck branch (ranks 2+4, blocks 2-6)
    python -m adaring_jax.main --config=configs/fewshot.py --config.data.class_bucket=False \
        --workdir=runs/exact
      -> the same job with the class prompts at their exact shapes (no class bucket: it
         compiles its own programs): the same math to float rounding, compounded over 640
         steps: other last digits
    python -m adaring_jax.main --config=configs/fewshot.py --config.model.fast_step=False \
        --workdir=runs/scanned
      -> the same job with the layer scan in the train step (model.fast_step=False): the same
         math in another order, so other last digits, and slower to train
    python -m adaring_jax.main --config=configs/fewshot.py:smoke --workdir=runs/smoke
    python -m adaring_jax.main --workdir=runs/pets --config=configs/fewshot.py:protocol=fewshot,\
        dataset=oxford_pets,checkpoint=openai/clip-vit-base-patch16 --config.data.data_dir=DATA
    python -m adaring_jax.params --config=configs/fewshot.py:method=mma,arch=vit_b16
      -> trainable parameters: 674560
    python -m adaring_jax.params --config=configs/fewshot.py:arch=vit_b16
      -> trainable parameters: 7824   (adaring's update rings; 1.2% of MMA)
    python -m adaring_jax.params --config=configs/fewshot.py:arch=vit_b16,sites=branch
      -> trainable parameters: 30736  (the branch rings, ranks 2+4+8; 4.6% of MMA)

Arguments (`:key=value,...`): protocol=base2novel|fewshot (all classes), method=zeroshot|mma|
adaring, checkpoint=<HF dir, hub id, or shapes-clip (default)>, arch=<preset: random weights>,
dataset=<name>, shots=<K>, seed=<n>, ranks=R1+R2 (adaring's banks; default 6+3), sites=<what
adaring's rings write: q+k+v+o,fc1+fc2 (default) or branch, whose ranks default to 2+4 on
shapes-clip, else 2+4+8>,
smoke. Pass the checkpoint as an argument, not as --config.model.checkpoint: the adapter
layers and the optimizer follow it.
"""

from adaring_jax import config_args


def get_config(arg=None):
    """Assembled in one place: adaring_jax/config_args.py `build`."""
    return config_args.build("base2novel", arg, {"protocol": "base2novel"})
