"""Config checks that need nothing but the config: every field a job reads, with a message that
names the field, its value and what is valid. Run before any data, weights or workdir is
touched (`ConfigError`, a `ValueError`)."""

from __future__ import annotations

import os

import jax

from adaring_jax import adapters, config_args, data
from adaring_jax.data import own
from adaring_jax.errors import ConfigError
from adaring_jax.models import clip

PROTOCOLS = ("fewshot", "base2novel", "cross_dataset", "domain_generalization")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("epoch_cosine", "cosine")
DTYPES = ("auto", "float32", "bfloat16")


def _choice(field, value, valid):
    if value not in valid:
        raise ConfigError(f"config.{field}={value!r} is not valid; choose from: "
                          f"{', '.join(map(str, valid))}")


_number = adapters.base.number  # a finite number within [low, high]


def validate(config) -> None:
    """Raise ConfigError for the first invalid field of an experiment config."""
    _choice("model.dtype", config.model.dtype, DTYPES)
    if config.model.arch:
        _choice("model.arch", clip.ALIASES.get(config.model.arch, config.model.arch),
                tuple(clip.PRESETS))
    elif not config.model.checkpoint:
        raise ConfigError("set config.model.checkpoint (a Hugging Face CLIP directory or hub "
                          "id) or config.model.arch (random weights, for tests and benchmarks)")
    o = config.optim
    _choice("optim.name", o.name, OPTIMIZERS)
    _number("optim.lr", o.lr, 0, 10, low_open=True)
    _number("optim.weight_decay", o.weight_decay, 0)
    _number("optim.batch_size", o.batch_size, 1, integer=True)
    _number("optim.steps", o.steps, 0, integer=True)
    _number("optim.warmup_steps", o.warmup_steps, 0, integer=True)
    _number("optim.min_lr", o.get("min_lr", 0.0), 0, o.lr)
    _number("optim.warmup_epochs", o.get("warmup_epochs", 0), 0, integer=True)
    _number("optim.warmup_lr", o.get("warmup_lr", 0.0), 0)
    if o.batch_size % jax.device_count():
        raise ConfigError(f"config.optim.batch_size={o.batch_size} must be divisible by the "
                          f"{jax.device_count()} devices of this job (each holds an equal share)")
    _number("optim.momentum", o.momentum, 0, 1)
    _number("seed", config.seed, 0, integer=True)
    _number("model.init_seed", config.model.init_seed, 0, integer=True)
    for field in ("data_dir", "split_dir"):
        path = config.data.get(field, "")
        if path and "://" not in path and not os.path.isdir(path):
            raise ConfigError(f"config.data.{field}={path!r}: no such directory")
    _number("eval.batch_size", config.eval.batch_size, 1, integer=True)
    _number("log_every", config.log_every, 1, integer=True)
    _number("checkpoint_every", config.checkpoint_every, 1, integer=True)
    _number("max_to_keep", config.max_to_keep, 1, integer=True)
    _number("data.num_threads", config.data.num_threads, 0, integer=True)
    if config.job == "pretrain":
        if config.get("protocol") != "pretrain":
            raise ConfigError(f"config.job='pretrain' on a {config.get('protocol')} adaptation "
                              "config: pretraining has its own config "
                              "(--config=configs/pretrain_shapes.py)")
        _number("optim.steps", o.steps, 1, integer=True)
        return
    _validate_adaptation(config)


def _validate_adaptation(config) -> None:
    _choice("protocol", config.protocol, PROTOCOLS)
    _choice("method", config.method, tuple(adapters.METHODS))
    if own.is_own(config.data.dataset):
        if not config.data.dataset.partition(":")[2]:
            raise ConfigError(f"config.data.dataset={config.data.dataset!r}: give a path or "
                              "name, e.g. folder:/data/pets, list:/data/pets.csv, tfds:dtd")
    else:
        _choice("data.dataset", config.data.dataset,
                (*data.DATASETS, "folder:PATH", "list:FILE", "tfds:NAME[/CONFIG]"))
    split_file = config.data.get("split_file", "")
    for field in ("tfds_splits", "classnames_file"):
        if config.data.get(field, "") and not config.data.dataset.startswith("tfds:"):
            raise ConfigError(f"config.data.{field} is for dataset=tfds:NAME")
    path = config.data.get("classnames_file", "")
    if path and not os.path.isfile(path):
        raise ConfigError(f"config.data.classnames_file={path!r}: no such file")
    if split_file and not config.data.dataset.startswith(("folder:", "list:")):
        raise ConfigError("config.data.split_file is for your own data (dataset=folder:PATH or "
                          "list:FILE); a preset dataset's CoOp split file goes in its folder "
                          "under data.data_dir")
    if split_file and not os.path.isfile(split_file):
        raise ConfigError(f"config.data.split_file={split_file!r}: no such file")
    template = config.data.get("template", "{}")
    if not isinstance(template, str) or template.count("{}") != 1 or "{" in template.replace(
            "{}", "", 1) or "}" in template.replace("{}", "", 1):
        raise ConfigError(f"config.data.template={template!r} must hold the class name "
                          "as one '{}', e.g. 'a photo of a {}.'")
    for name in config.data.eval_datasets:
        _choice("data.eval_datasets", name, tuple(data.DATASETS))
    _choice("optim.schedule", config.optim.schedule, SCHEDULES)
    _choice("data.prompt", config.data.prompt, data.prompts.STYLES)
    _choice("data.zeroshot_prompt", config.data.zeroshot_prompt, data.prompts.STYLES)
    embedded = config.model.checkpoint == config_args.EMBEDDED
    if config.recipe != ("embedded" if embedded else "mma"):
        raise ConfigError(
            f"config.model.checkpoint={config.model.checkpoint!r} was set after the config was "
            f"built for the {config.recipe} recipe; pass the checkpoint as a config argument "
            "instead (--config=configs/X.py:checkpoint=...), so that the adapter layers and "
            "the optimizer follow that model")
    if config.data.shots != -1:  # -1: every training image (shots=all)
        _number("data.shots", config.data.shots, 1, integer=True)
    _number("data.crop_scale", config.data.crop_scale, 0, 1, low_open=True)
    _number("data.min_usable", config.data.min_usable, 0, 1)
    _number("eval.max_examples", config.eval.max_examples, 0, integer=True)
    method = adapters.get(config.method)
    fields = set(method.config_block())
    if set(config.adapter) != fields:
        raise ConfigError(
            f"config.method={config.method!r}, but config.adapter holds the fields "
            f"{', '.join(sorted(config.adapter)) or 'of none'} where {config.method} has "
            f"{', '.join(sorted(fields)) or 'none'}: the method was changed after the config "
            "was built; pass it as a config argument instead "
            "(--config=configs/X.py:method=...), so that its adapter block is built")
    if method.trains:
        init_from = config.adapter.get("init_from", "")
        if config.optim.steps == 0:  # epochs=0 evaluates a warm start untrained
            _number("optim.epochs", config.optim.epochs, 0 if init_from else 1, integer=True)
        if init_from and not os.path.isdir(init_from):
            raise ConfigError(f"config.adapter.init_from={init_from!r}: no such run directory")
    method.check(config)
    for k, v in config.loss.items():
        _number(f"loss.{k}", v, 0)


def check_depth(config, model_config) -> None:
    """The adapted blocks lie within the model's depth (needs the model's architecture)."""
    adapters.spec_from_config(config, model_config)  # ConfigError names the fields
