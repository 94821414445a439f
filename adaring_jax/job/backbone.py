"""The frozen CLIP of a job: (model, params, tokenizer) from a checkpoint or a preset.

A real run loads a Hugging Face CLIP directory (or hub id, or the shipped `shapes-clip`)
through `models.convert`; tests and benchmarks use a preset architecture with random weights,
whose tokenizer is a vocabulary of the task's own words, written to a private temporary
directory (never into the workdir: nothing is written there before the inputs are checked).
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile

import jax

from adaring_jax.models import clip, convert, tokenizer


def compute_dtype(name: str) -> str:
    """"auto" -> bfloat16 on GPU/TPU (MMA trains with fp16 autocast), float32 on CPU (bf16 is
    no faster there); else `name`."""
    if name != "auto":
        return name
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def step_model(model: clip.CLIP, config) -> clip.CLIP:
    """The model the train step runs: `model`, unrolled when `config.model.fast_step`
    (CLIPConfig.unrolled; the same parameters). Evaluation keeps `model`."""
    if not config.model.get("fast_step", True):
        return model
    return clip.CLIP(dataclasses.replace(model.config, unrolled=True))


def load(config, words: list[str]):
    """(model, frozen params, tokenizer) for `config.model`; `words` are the task's words (the
    vocabulary of random-weight models)."""
    dtype = compute_dtype(config.model.dtype)
    remat = bool(config.model.get("remat", False))
    if config.model.checkpoint:
        directory = convert.resolve(config.model.checkpoint)
        model, params = convert.load_pretrained(directory, dtype=dtype)
        model = clip.CLIP(dataclasses.replace(model.config, remat=remat))
        return model, params, tokenizer.load_tokenizer(directory, model.config.text)
    vocab_dir = tempfile.mkdtemp(prefix="adaring-vocab-")
    atexit.register(shutil.rmtree, vocab_dir, True)
    vocab = tokenizer.write_vocab(words, vocab_dir)
    base = clip.preset(config.model.arch, dtype=dtype)
    text = dataclasses.replace(base.config.text, vocab_size=vocab, eos_token_id=vocab - 1,
                               bos_token_id=vocab - 2, pad_token_id=vocab - 1)
    model = clip.CLIP(dataclasses.replace(base.config, text=text, remat=remat))
    # unsafe_rbg: the same weights on every run, and 2-3x less compile time than threefry.
    params = clip.init_params(model, jax.random.key(config.model.init_seed, impl="unsafe_rbg"))
    return model, params, tokenizer.load_tokenizer(vocab_dir, model.config.text)
