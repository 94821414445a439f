r"""Contrastive pretraining of the embedded default CLIP on the shapes world's pretraining domain.

    python -m adaring_jax.main --config=configs/pretrain_shapes.py --workdir=runs/pretrain
      -> zero-shot accuracy over all 64 classes: pretrain domain 93.75%, target domain 19.8%
         (chance 1.6%); 3,000 steps, 21.6 min of training, 22 min in all on 2 CPU cores
    python -m adaring_jax.main --config=configs/pretrain_shapes.py:smoke --workdir=runs/pt_smoke

Trains all parameters of a `shapes-vit` CLIP (ViT 6 x 96, patch 8 on 32 px: 16 tokens; text
6 x 64; 1.0M parameters) with a multi-positive CLIP loss on captions naming colour, shape or
both; evaluates zero-shot on both rendering domains and exports a Hugging Face directory to
`runs/pretrain/export`. That export is the shipped `adaring_jax/assets/shapes_clip`
(`checkpoint=shapes-clip`). Patch 4 (64 tokens) learned shape far more slowly per second:
25.4% after 20 minutes.
"""

from adaring_jax import config_args


def get_config(arg=None):
    arg = config_args.parse(arg, **{**config_args.COMMON_ARGS, "arch": "shapes-vit",
                                    "method": "zeroshot"})
    config = config_args.base_config("pretrain", arg)
    config.job = "pretrain"  # main runs adaring_jax.job.pretrain, not the adaptation job
    config.model.arch, config.model.checkpoint = arg.arch, ""
    config.optim.name = "adamw"  # all parameters, from scratch
    config.optim.lr = 2e-3
    config.optim.weight_decay = 0.05
    config.optim.batch_size = 128
    config.optim.steps = 3000
    config.optim.warmup_steps = 200
    config.eval.batch_size = 256
    config.eval.size = 64 * 40  # test images per domain for the zero-shot report
    config.log_every, config.checkpoint_every = 50, 500
    if arg.smoke:
        config.model.arch = "tiny"
        config.data.num_threads = 2
        config.optim.steps, config.optim.batch_size, config.optim.warmup_steps = 4, 16, 1
        config.eval.size, config.eval.batch_size = 128, 64
        config.log_every, config.checkpoint_every = 2, 2
    config.lock()
    return config
