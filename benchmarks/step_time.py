r"""Time the compiled train step of an experiment config with random weights (no download).

    python benchmarks/step_time.py --config=configs/fewshot.py:arch=vit_b16 \
        --batch=8 --classes=100 [--repeats=5] [--prompts=both]

Reports compile time, median step time over `repeats` (warm-up excluded), images/s and peak
memory (XLA's memory analysis of the compiled step; on GPU/TPU also the device's peak). With
`--prompts=both` it also times the step with full-length prompts recomputed through every text
layer, and prints the speed-up of cutting prompts at the longest end-of-text and caching the
frozen text layers below the first adapted one (DESIGN.md section 6). The default `--batch=8
--classes=100` with `arch=vit_b16` is the reference setting of DESIGN.md section 6.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from adaring_jax import adapters, objective, sharding, train
from adaring_jax.models import clip

_CONFIG = config_flags.DEFINE_config_file("config", "configs/fewshot.py:arch=vit_b16",
                                          "Experiment config.", lock_config=False)
_BATCH = flags.DEFINE_integer("batch", 8, "Global batch size.")
_CLASSES = flags.DEFINE_integer("classes", 100, "Number of class prompts.")
_PROMPT_TOKENS = flags.DEFINE_integer("prompt_tokens", 10, "Tokens per class prompt incl. "
                                      "start/end (CoOp-style prompts are ~8-16).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps (after 2 warm-up steps).")
_PROMPTS = flags.DEFINE_enum("prompts", "cached", ["cached", "full", "both"],
                             "cached: cut + cache frozen text layers; full: 77 tokens, all "
                             "layers every step; both: time both and print the ratio.")


def _prompt_ids(model: clip.CLIP, classes: int, tokens: int, rng) -> np.ndarray:
    t = model.config.text
    ids = np.zeros((classes, t.context_length), np.int32)
    eos = t.vocab_size - 1 if t.eos_token_id == 2 else t.eos_token_id
    ids[:, 0] = t.bos_token_id
    ids[:, 1:tokens - 1] = rng.integers(1, t.vocab_size - 2, (classes, tokens - 2))
    ids[:, tokens - 1:] = eos  # end-of-text, then padding with the same id (as CLIP pads)
    return ids


def time_step(config, batch: int, classes: int, tokens: int, repeats: int, cached: bool):
    mesh = sharding.make_mesh()
    model = clip.preset(config.model.arch, dtype=train.compute_dtype(config.model.dtype))
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
    prompts = (objective.Prompts.cached(model, frozen, padded, spec.layers[0], classes) if cached
               else objective.Prompts(padded, count=classes))
    text_ref = jnp.asarray(rng.standard_normal((classes, model.config.projection_dim)),
                           jnp.float32)
    opt, schedule = train.make_optimizer(config, 1000, 100)
    a = adapters.init(spec, 0)
    state = jax.device_put({"adapters": a, "opt_state": opt.init(a),
                            "step": jnp.zeros((), jnp.int32)},
                           sharding.replicated(mesh))
    size = model.config.vision.image_size
    batch_arrays = sharding.global_batch({
        "image": rng.standard_normal((batch, size, size, 3)).astype(np.float32),
        "label": rng.integers(0, classes, batch).astype(np.int32),
        "mask": np.ones(batch, np.float32)}, mesh)
    step = train.make_train_step(model, spec, config.loss.to_dict(), opt, schedule, mesh)

    start = time.perf_counter()
    compiled = step.lower(state, frozen, batch_arrays, prompts, text_ref).compile()
    compile_s = time.perf_counter() - start
    mem = compiled.memory_analysis()
    peak = None if mem is None else (mem.temp_size_in_bytes + mem.argument_size_in_bytes
                                     + mem.output_size_in_bytes - mem.alias_size_in_bytes)
    times = []
    for i in range(2 + repeats):
        start = time.perf_counter()
        state, metrics = compiled(state, frozen, batch_arrays, prompts, text_ref)
        jax.block_until_ready(metrics)
        if i >= 2:
            times.append(time.perf_counter() - start)
    device_peak = None
    stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        device_peak = stats["peak_bytes_in_use"]
    median = statistics.median(times)
    return {"compile_s": compile_s, "step_s": median, "images_per_s": batch / median,
            "xla_peak_gib": None if peak is None else peak / 2 ** 30,
            "device_peak_gib": None if device_peak is None else device_peak / 2 ** 30,
            "prompt_tokens": int(padded.shape[1]), "trainable": adapters.count(spec)}


def main(argv):
    del argv
    config = _CONFIG.value
    if not config.model.arch:
        raise app.UsageError("this benchmark uses random weights: pass arch=<preset> in the "
                             "config argument, e.g. configs/fewshot.py:arch=vit_b16")
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, "
          f"method={config.method}, arch={config.model.arch}, batch={_BATCH.value}, "
          f"classes={_CLASSES.value}, dtype={train.compute_dtype(config.model.dtype)}")
    modes = {"cached": [True], "full": [False], "both": [True, False]}[_PROMPTS.value]
    results = {}
    for cached in modes:
        r = time_step(config, _BATCH.value, _CLASSES.value, _PROMPT_TOKENS.value,
                      _REPEATS.value, cached)
        name = "cut+cached prompts" if cached else "full prompts"
        results[cached] = r
        mem = "n/a" if r["xla_peak_gib"] is None else f"{r['xla_peak_gib']:.2f} GiB"
        dev = "" if r["device_peak_gib"] is None else f", device peak {r['device_peak_gib']:.2f} GiB"
        print(f"{name:>19}: {r['prompt_tokens']:2d} tokens, compile {r['compile_s']:.1f} s, "
              f"step {r['step_s'] * 1000:.1f} ms (median of {_REPEATS.value}), "
              f"{r['images_per_s']:.1f} images/s, XLA peak {mem}{dev}, "
              f"{r['trainable']:,} trainable params")
    if len(results) == 2:
        print(f"speed-up of cut+cached prompts: {results[False]['step_s'] / results[True]['step_s']:.2f}x")


if __name__ == "__main__":
    app.run(main)
