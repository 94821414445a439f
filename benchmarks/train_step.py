"""The compiled train step of an experiment config with random weights (no download), its
arguments, and one timed call: what `step_time.py` and `step_profile.py` measure."""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from adaring_jax import adapters
from adaring_jax.job import backbone, objective, optim, sharding
from adaring_jax.models import clip, convert


def _prompt_ids(model: clip.CLIP, classes: int, tokens: int, rng) -> np.ndarray:
    t = model.config.text
    ids = np.zeros((classes, t.context_length), np.int32)
    eos = t.vocab_size - 1 if t.eos_token_id == 2 else t.eos_token_id
    ids[:, 0] = t.bos_token_id
    ids[:, 1:tokens - 1] = rng.integers(1, t.vocab_size - 2, (classes, tokens - 2))
    ids[:, tokens - 1:] = eos  # end-of-text, then padding with the same id (as CLIP pads)
    return ids


def prepare(config, batch: int, classes: int, tokens: int, cached: bool) -> dict:
    """The compiled train step of `config` with random weights (the architecture of
    `model.arch`, else of the checkpoint's config.json), its arguments and facts."""
    mesh = sharding.make_mesh()
    arch = convert.architecture(config.model.arch, config.model.checkpoint)  # no weights read
    model = clip.CLIP(dataclasses.replace(arch, dtype=backbone.compute_dtype(config.model.dtype),
                                          remat=config.model.remat))
    frozen = clip.init_params(model, jax.random.key(0, impl="unsafe_rbg"))
    frozen = jax.device_put(frozen, sharding.backbone_shardings(frozen, mesh, config.model.fsdp))
    spec = adapters.spec_from_config(config, model.config)
    rng = np.random.default_rng(0)
    ids = _prompt_ids(model, classes, tokens, rng)
    t = model.config.text
    if cached:
        ids = objective.Prompts.truncate(ids, t.eos_token_id)
    padded = jax.device_put(sharding.pad_rows(ids, mesh.devices.size),
                            sharding.batch_sharded(mesh))
    start = objective.text_start(model, spec)
    prompts = (objective.Prompts.cached(model, frozen, padded, start, classes) if cached
               else objective.Prompts(padded, count=classes))
    text_ref = jnp.asarray(rng.standard_normal((classes, model.config.projection_dim)),
                           jnp.float32)
    opt, schedule = optim.make_optimizer(config, spec, 1000, 100)
    a = adapters.init(spec, 0)
    state = jax.device_put({"adapters": a, "opt_state": opt.init(a),
                            "step": jnp.zeros((), jnp.int32)},
                           sharding.replicated(mesh))
    size = model.config.vision.image_size
    batch_arrays = sharding.global_batch({
        "image": rng.standard_normal((batch, size, size, 3)).astype(np.float32),
        "label": rng.integers(0, classes, batch).astype(np.int32),
        "mask": np.ones(batch, np.float32)}, mesh)
    step = optim.make_train_step(backbone.step_model(model, config), spec,
                                 config.loss.to_dict(), opt, schedule, mesh)
    args = (frozen, batch_arrays, prompts, text_ref)
    compiled, compile_s = _compile(step, state, args)
    mem = compiled.memory_analysis()
    peak = None if mem is None else (mem.temp_size_in_bytes + mem.argument_size_in_bytes
                                     + mem.output_size_in_bytes - mem.alias_size_in_bytes)
    return {"compiled": compiled, "step": step, "state": state, "args": args,
            "compile_s": compile_s, "xla_peak_gib": None if peak is None else peak / 2 ** 30,
            "prompt_tokens": int(padded.shape[1]), "trainable": adapters.count(spec),
            "batch": batch}


def _compile(step, state, args):
    """The step traced, lowered and compiled for these arguments, and the seconds that took."""
    start = time.perf_counter()
    compiled = step.lower(state, *args).compile()
    return compiled, time.perf_counter() - start


def recompile_seconds(p: dict) -> float:
    """Seconds to trace, lower and compile a prepared step again from nothing: JAX's in-memory
    caches are cleared first (the persistent cache is the caller's to turn off)."""
    jax.clear_caches()
    return _compile(p["step"], p["state"], p["args"])[1]


def run_once(p: dict) -> float:
    """Seconds of one step of a prepared step (its state carried over)."""
    start = time.perf_counter()
    p["state"], metrics = p["compiled"](p["state"], *p["args"])
    jax.block_until_ready(metrics)
    return time.perf_counter() - start
