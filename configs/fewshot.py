r"""Few-shot adaptation of CLIP with AdaRing, MMA, or none (zero-shot).

Trainable-parameter report (shapes only; offline, seconds):

    python -m adaring_jax.params --config=configs/fewshot.py:method=mma,arch=vit_b16
      -> trainable parameters: 674560
    python -m adaring_jax.params --config=configs/fewshot.py:arch=vit_b16
      -> trainable parameters: 30736   (adaring, banks of TR rank 2, 4, 8; 4.6% of MMA)

Arguments (`:key=value,...`): method=zeroshot|mma|adaring, arch=<preset or alias>,
ranks=2+4+8 (one TR rank per AdaRing bank; one rank = single AdaRing), checkpoint=<HF dir/id>,
dataset=<name>, shots=<K>, seed=<n>.
"""

from adaring_jax import config_args


def get_config(arg=None):
    arg = config_args.parse(arg, method="adaring", arch="", checkpoint="", ranks=(2, 4, 8),
                            dataset="shapes", shots=16, seed=1)
    import ml_collections
    config = ml_collections.ConfigDict()
    config.method = arg.method  # zeroshot | mma | adaring
    config.seed = arg.seed  # few-shot draw and adapter init

    config.model = ml_collections.ConfigDict()
    config.model.arch = arg.arch  # preset (vit_b16, ViT-L/14, tiny...); '' = checkpoint's own
    config.model.checkpoint = arg.checkpoint  # Hugging Face CLIP directory or hub id
    config.model.dtype = "float32"  # compute dtype; adapter params are always float32

    config.adapter = ml_collections.ConfigDict()
    config.adapter.start = 5  # first adapted block, 1-based (MMA: 5)
    config.adapter.end = 12  # last adapted block, 1-based inclusive (MMA: 12)
    config.adapter.hidden = 32  # bottleneck width of Down/Shared/Up (MMA: 32)
    config.adapter.alpha = 0.001  # branch scale (MMA: 0.001)
    config.adapter.unscaled_grads = True  # MMA's gradient treatment: adapter grads / alpha
    config.adapter.ranks = arg.ranks  # adaring: TR rank of each bank; K = len(ranks)
    config.adapter.max_mode = 16  # adaring: split wide modes into factors <= this (0: off)

    config.loss = ml_collections.ConfigDict()
    config.loss.text_l1 = 25.0  # |f_txt - f_txt0|_1 weight (PromptSRC: 25)
    config.loss.image_l1 = 10.0  # |f_img - f_img0|_1 weight (PromptSRC: 10)
    config.loss.kl = 1.0  # KL(p0 || p) weight (PromptSRC: 1)
    config.loss.diversity = 0.1  # heterogeneous banks: output-similarity penalty
    if arg.method == "mma":  # MMA trains with cross-entropy only
        config.loss.text_l1 = config.loss.image_l1 = config.loss.kl = 0.0
        config.loss.diversity = 0.0

    config.data = ml_collections.ConfigDict()
    config.data.dataset = arg.dataset  # dataset preset name
    config.data.shots = arg.shots  # K images per class

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"  # sgd | adamw
    config.optim.lr = 0.0015  # MMA: 0.0015
    config.optim.momentum = 0.9
    config.optim.weight_decay = 5e-4
    config.optim.epochs = 5  # MMA: 5
    config.optim.batch_size = 16  # MMA: 16 (128 for ImageNet)
    config.lock()
    return config
