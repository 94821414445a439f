"""Where an experiment config is assembled, in one place: `build(protocol, arg)` is what every
`configs/*.py` `get_config(arg)` returns.

1. `parse`: the argument of `--config=configs/fewshot.py:method=mma,arch=vit_b16`, a
   comma-separated list of `key=value` pairs or bare `key`s (meaning True). Values take the
   type of the key's default; tuples are written with `+` (`ranks=2+4+8`).
2. `base_config`: every field, one comment each, with MMA's values as defaults.
3. The recipe for the checkpoint (`RECIPES`):
   - `mma`: MMA's (ZjjConan/Multi-Modal-Adapter `configs/trainers/MultiModalAdapter/
     vit_b16_ep5.yaml`; `vit_b16_ep5_imnet.yaml` for ImageNet: batch 128), for real CLIP
     checkpoints. Its values are base_config's defaults; ImageNet's batch is set in `apply`.
   - `embedded`: the shipped tiny CLIP (`checkpoint=shapes-clip`, 6 blocks per tower), chosen
     on the embedded task (docs/results.md): MMA's SGD with 1/alpha-scaled gradients diverged
     for the ring's multiplicative parameters there, AdamW at 1e-2 did not; every method uses
     it, so the comparison is fair.
   - `smoke`: seconds on 2 CPU cores: a tiny random CLIP on a little shapes data.
4. The method's own values of that recipe (`Method.recipe` in its module: AdaRing's banks on
   the embedded CLIP, CLIP-LoRA's optimizer on real ones) and its loss weights (`Method.loss`).
The config is then locked. A job checks every field when it starts (job/validation.py), after
any `--config.x=y` override from the command line.
"""

from __future__ import annotations

import ml_collections

from adaring_jax import adapters
from adaring_jax.data import own, presets
from adaring_jax.errors import ConfigError
from adaring_jax.models import convert


def _convert(key: str, value: str, default):
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", ""):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
        if key == "shots" and value.lower() == "all":
            return -1  # every training image (task.ALL_SHOTS)
        if isinstance(default, tuple):
            kind = type(default[0]) if default else int  # () defaults: ranks
            return tuple(kind(v) for v in value.split("+") if v)
        return type(default)(value)
    except ValueError:
        raise ConfigError(f"config argument {key}={value!r}: expected a "
                         f"{type(default).__name__} like {default!r}") from None


def parse(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """'k=v,flag' -> ConfigDict over `defaults`; an unknown key lists the valid ones."""
    out = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ConfigError(f"unknown config argument {key!r}; valid: {', '.join(defaults)}")
        out[key] = _convert(key, value.strip() if "=" in item else "true", defaults[key])
    return ml_collections.ConfigDict(out)


# The name of the one checkpoint shipped in the package (the embedded tiny CLIP), spelled once,
# in models.convert.EMBEDDED.
[EMBEDDED] = convert.EMBEDDED

# Arguments every experiment config accepts (`--config=configs/X.py:key=value,...`).
# The default checkpoint is the embedded tiny CLIP, so every config runs offline as is; real
# runs pass e.g. checkpoint=openai/clip-vit-base-patch16.
COMMON_ARGS = dict(method="adaring", arch="", checkpoint=EMBEDDED,
                   dataset="shapes", shots=16, seed=1, ranks=(), sites="", smoke=False)


def base_config(protocol: str, arg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Every field of an experiment config, one comment each, with MMA's values (the baseline's
    recipe) as defaults. The configs apply the recipe that fits their checkpoint on top
    (adaring_jax/recipes.py). `arg` comes from `parse(..., **COMMON_ARGS)`."""
    method = adapters.get(arg.method)
    for name in ("ranks", "sites"):
        if arg[name] and name not in method.config_block():
            raise ConfigError(f"the config argument {name} is for adaring, not "
                              f"method={arg.method}")
    c = ml_collections.ConfigDict()
    c.job = "adapt"  # adapt (this config family) | pretrain (configs/pretrain_shapes.py)
    c.protocol = protocol  # fewshot | base2novel | cross_dataset | domain_generalization
    c.method = arg.method  # a name in adaring_jax.adapters.METHODS
    c.seed = arg.seed  # few-shot draw, adapter init, data order and augmentation

    c.model = ml_collections.ConfigDict()
    c.model.checkpoint = "" if arg.arch else arg.checkpoint  # HF CLIP directory or hub id
    c.model.arch = arg.arch  # preset name: random weights (tests, benchmarks), no download
    c.model.init_seed = 0  # random weights' seed (arch only)
    # Compute dtype; adapter params stay float32. "auto": bfloat16 on GPU/TPU (MMA trains with
    # fp16 autocast, PREC "amp" in its configs), float32 on CPU (bf16 is no faster there).
    c.model.dtype = "auto"
    c.model.fsdp = False  # shard large frozen backbone weights over the data axis
    # Recompute block activations in the backward pass (less memory; for L/14-336 on small
    # accelerators). The same arithmetic, but XLA fuses it differently: the last bits of the
    # gradients move, and with them a trained run's digits.
    c.model.remat = False
    # Train with the layers unrolled and attention heads-major (CLIPConfig.unrolled): the same
    # math as the layer scan, summed in another order; on 2 CPU cores the step is 1.2x
    # (ViT-B/16) to 1.4x (embedded) faster, 1.45x at batch 128 on an H200. False trains the
    # scanned model (other last bits). Evaluation and zero-shot never use it.
    c.model.fast_step = True

    # The method's own block (adaring_jax/adapters/<method>.py lists and explains its fields;
    # zeroshot has none).
    c.adapter = ml_collections.ConfigDict(method.config_block())

    # Generalization-aware weights (docs/method.md, "Generalization-aware loss"), each method's
    # defaults (`Method.loss`); MMA trains with cross-entropy only, AdaRing with
    # adapters/adaring.py's LOSS.
    c.loss = ml_collections.ConfigDict()
    c.loss.text_l1 = 0.0  # |f_txt - f_txt0|_1 (PromptSRC: 25)
    c.loss.image_l1 = 0.0  # |f_img - f_img0|_1 (PromptSRC: 10)
    c.loss.kl = 0.0  # KL(p0 || p) to zero-shot logits (PromptSRC: 1)
    c.loss.diversity = 0.0  # banks' output similarity (adaring)
    c.loss.update(method.loss)

    c.data = ml_collections.ConfigDict()
    # Training dataset: a name in adaring_jax.data.DATASETS, or your own data: folder:PATH
    # (class folders), list:FILE (csv/tsv/jsonl rows, or a CoOp split json); data/own.py.
    c.data.dataset = arg.dataset
    c.data.shots = arg.shots  # K training images per class; -1 (shots=all): every image
    # Your own data: a CoOp split_zhou_*.json to use instead of making a split (e.g. the one
    # an earlier run wrote into its workdir), paths relative to the folder or list.
    c.data.split_file = ""
    # Your own data: read list paths that lead outside the list's folder (absolute, or "..").
    c.data.allow_outside = False
    c.data.template = "a photo of a {}."  # your own data: the prompt (MMA's by default)
    # tfds:NAME: our splits as TFDS split strings, "train=train[:80%],test=train[80%:]"
    # ("": TFDS's train, validation and test), and a file naming classes whose TFDS names are
    # ids ("id<TAB>name" per line).
    c.data.tfds_splits = ""
    c.data.classnames_file = ""
    c.data.data_dir = ""  # CoOp folders and/or TFDS data; "" = TFDS default
    # CoOp dataset folders with split_zhou_*.json (and upstream split_fewshot/*.pkl caches) for
    # images read from TFDS, e.g. a local copy when data_dir is on GCS; "" = data_dir.
    c.data.split_dir = ""
    # Prompt of the adapted model, in training and testing (data/prompts.py): "mma" = "a photo
    # of a {}." on every dataset (MMA's; AdaRing builds on MMA), "coop" = CoOp's per-dataset
    # template. The zero-shot row uses `zeroshot_prompt`: "coop", as in the published tables.
    c.data.prompt = method.prompt
    c.data.zeroshot_prompt = "coop"
    c.data.eval_datasets = ()  # cross_dataset / domain_generalization targets
    c.data.crop_scale = 0.08  # random resized crop: minimum area share (CoOp: 0.08)
    # Least share of a split's images that must decode (sampled before training, counted in
    # evaluation); under it the run stops instead of reporting numbers.
    c.data.min_usable = 0.9
    c.data.num_threads = 0  # decode/augment threads per process; 0: min(4, cores)
    # Class buckets (job/buckets.py): class prompts padded to a few fixed shapes (classes to a
    # power of two >= 64, tokens to a multiple of 8), the padding masked out, so that the
    # datasets, seeds and splits of a table share one compiled train step and evaluation
    # programs (from the compile cache). The same results to float rounding; False: exact
    # shapes, each run compiling its own.
    c.data.class_bucket = True
    c.data.shapes_domain = "target"  # shapes: adapt and test in the shifted rendering domain
    c.data.shapes_size = ml_collections.ConfigDict(
        {"train": 64 * 50, "val": 64 * 10, "test": 64 * 400})  # shapes: images per split

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "sgd"  # sgd | adamw
    c.optim.lr = 0.0015  # MMA: 0.0015
    c.optim.momentum = 0.9  # SGD momentum (Dassl default)
    c.optim.weight_decay = 5e-4  # Dassl default
    c.optim.epochs = 5  # MMA: 5
    c.optim.steps = 0  # > 0 overrides epochs
    c.optim.batch_size = 16  # global batch (MMA: 16; its recipe: 128 on ImageNet)
    # "epoch_cosine": Dassl's CosineAnnealingLR(T_max=epochs) stepped once per epoch (MMA
    # trainers/mmadapter.py L285-286: lr constant within an epoch); "cosine": per step.
    c.optim.schedule = "epoch_cosine"
    c.optim.warmup_steps = 0  # linear warmup before the cosine decay (MMA: none)
    c.optim.min_lr = 0.0  # "cosine": the rate it decays to (CLIP-LoRA: 1e-6)
    # "epoch_cosine": epochs at a constant warmup rate first (Dassl's constant warmup; CoOp: 1
    # epoch at 1e-5), the cosine after them.
    c.optim.warmup_epochs = 0
    c.optim.warmup_lr = 0.0

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 100  # global evaluation batch (CoOp: 100)
    c.eval.max_examples = 0  # > 0: evaluate on the first N test examples only

    c.log_every = 20  # steps between metric records
    c.checkpoint_every = 200  # steps between checkpoints (and at the end)
    c.max_to_keep = 2  # checkpoints kept

    # The recipe applied (`apply`); validation refuses a checkpoint swapped in
    # afterwards (`--config.model.checkpoint=`), which would keep the other model's recipe.
    c.recipe = "mma"
    return c


def mma(c, arg):  # noqa: ARG001
    """MMA's values are base_config's defaults (ImageNet's batch: `apply`)."""


def _placement(c, **fields):
    """Set the adapter block's placement fields that the method has (zeroshot: none)."""
    for key, value in fields.items():
        if key in c.adapter:
            c.adapter[key] = value


def embedded(c, arg):
    del arg
    _placement(c, start=2, end=6, alpha=0.1, unscaled_grads=False)  # 5 blocks per tower
    c.optim.name, c.optim.lr, c.optim.weight_decay = "adamw", 0.01, 0.0
    c.optim.schedule = "cosine"  # per step, as the evidence runs were made
    # 32 base classes x 16 shots / batch 16 = 32 steps an epoch. 20 epochs: both methods gain
    # over 10 (fidelity sweep, experiments/sweep.md: AdaRing HM 36.8 -> 39.6, MMA 42.0 -> 46.0).
    c.optim.epochs = 20


def smoke(c, arg):
    if not presets.is_shapes(arg.dataset) and not own.is_own(arg.dataset):
        raise ConfigError(f"smoke runs on the embedded shapes world; drop dataset={arg.dataset} "
                          "or smoke (or use your own data: dataset=folder:PATH)")
    c.model.arch, c.model.checkpoint = arg.arch or "tiny", ""
    # 2 shots unless asked otherwise (16 is every config's default).
    c.data.shots = 2 if arg.shots == COMMON_ARGS["shots"] else arg.shots
    c.data.shapes_size = ml_collections.ConfigDict({"train": 256, "val": 64, "test": 128})
    c.data.num_threads = 2
    _placement(c, start=2, end=4)
    c.optim.batch_size, c.optim.steps, c.optim.schedule = 8, 6, "cosine"
    c.eval.batch_size, c.eval.max_examples = 32, 64
    c.log_every, c.checkpoint_every = 2, 3


RECIPES = {"mma": mma, "embedded": embedded, "smoke": smoke}


def apply(c, arg):
    """The recipe for the config's checkpoint (or `smoke`), then the method's values of it."""
    name = "smoke" if arg.smoke else "embedded" if c.model.checkpoint == EMBEDDED \
        else "mma"
    if arg.dataset == "imagenet":
        c.optim.batch_size = 128  # MMA's vit_b16_ep5_imnet.yaml, for every ImageNet run
    RECIPES[name](c, arg)
    adapters.get(c.method).recipe(c, name, arg)
    c.recipe = "mma" if name == "smoke" else name
    return c


def build(protocol: str, arg: str | None, defaults: dict | None = None,
          eval_datasets=None) -> ml_collections.ConfigDict:
    """The locked experiment config of `protocol` for the argument string `arg`: parsed over
    COMMON_ARGS (updated by `defaults`), base_config, the checkpoint's recipe and the method's
    values of it; `eval_datasets(config)` gives the protocol's test datasets, if it has any."""
    parsed = parse(arg, **{**COMMON_ARGS, **(defaults or {})})
    c = apply(base_config(parsed.get("protocol", protocol), parsed), parsed)
    if eval_datasets is not None:
        c.data.eval_datasets = tuple(eval_datasets(c))
    c.lock()
    return c
