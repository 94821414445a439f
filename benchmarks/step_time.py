r"""Time the compiled train step of an experiment config with random weights (no download).

    python -m benchmarks.step_time --config=configs/fewshot.py:arch=vit_b16 \
        --batch=8 --classes=100 [--repeats=5] [--prompts=both] [--methods=adaring,mma]
    python -m benchmarks.step_time --config=configs/fewshot.py --batch=16 --classes=32 \
        --methods=adaring,adaring:fast     # the embedded job's step, with model.fast_step

Reports compile time, median step time over `repeats` (warm-up excluded), images/s and peak
memory (XLA's memory analysis of the compiled step; on GPU/TPU also the device's peak). With
`--prompts=both` it also times the step with full-length prompts recomputed through every text
layer, and prints the speed-up of cutting prompts at the longest end-of-text and caching the
frozen text layers below the first adapted one (docs/method.md, "Fixed prompts and the frozen
trunk"). The default `--batch=8 --classes=100` with `arch=vit_b16` is the reference setting
(docs/performance.md, "The reference setting").
"""

from __future__ import annotations

import statistics

import jax
from absl import app, flags
from ml_collections import config_flags

from adaring_jax import host
from adaring_jax.job import backbone
from benchmarks.train_step import prepare, run_once

_CONFIG = config_flags.DEFINE_config_file("config", "configs/fewshot.py:arch=vit_b16",
                                          "Experiment config.", lock_config=False)
_BATCH = flags.DEFINE_integer("batch", 8, "Global batch size.")
_CLASSES = flags.DEFINE_integer("classes", 100, "Number of class prompts.")
_PROMPT_TOKENS = flags.DEFINE_integer("prompt_tokens", 10, "Tokens per class prompt incl. "
                                      "start/end (CoOp-style prompts are ~8-16).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps (after 2 warm-up steps).")
_METHODS = flags.DEFINE_list("methods", [], "Time these methods' steps alternately instead "
                              "(each from configs/fewshot.py:arch=ARCH,method=M; M:fast with "
                              "model.fast_step) and print the ratios to the first.")
_PROMPTS = flags.DEFINE_enum("prompts", "cached", ["cached", "full", "both"],
                             "cached: cut + cache frozen text layers; full: 77 tokens, all "
                             "layers every step; both: time both and print the ratio.")


def time_alternately(prepared: dict, repeats: int) -> dict:
    """{name: median step seconds}: 2 warm-up steps each, then `repeats` rounds in which every
    prepared step runs once, so all see the same machine state."""
    for p in prepared.values():
        run_once(p), run_once(p)
    times = {name: [] for name in prepared}
    for _ in range(repeats):
        for name, p in prepared.items():
            times[name].append(run_once(p))
    return {name: statistics.median(t) for name, t in times.items()}


def time_step(config, batch: int, classes: int, tokens: int, repeats: int, cached: bool):
    p = prepare(config, batch, classes, tokens, cached)
    median = time_alternately({"step": p}, repeats)["step"]
    device_peak = None
    stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        device_peak = stats["peak_bytes_in_use"]
    return {"compile_s": p["compile_s"], "step_s": median, "images_per_s": batch / median,
            "xla_peak_gib": p["xla_peak_gib"],
            "device_peak_gib": None if device_peak is None else device_peak / 2 ** 30,
            "prompt_tokens": p["prompt_tokens"], "trainable": p["trainable"]}


def compare_methods(config, methods, batch, classes, tokens, repeats) -> dict:
    """Each method's step from configs/fewshot.py:arch=ARCH,method=M (its recipe; the adapted
    blocks of `config`; cached prompts), timed alternately in this process. `M:fast` is M
    with `model.fast_step` on."""
    from configs import fewshot
    prepared = {}
    for m in methods:
        method, _, mode = m.partition(":")
        if mode not in ("", "fast"):
            raise app.UsageError(f"--methods entry {m!r}: write METHOD or METHOD:fast")
        arch = (f"arch={config.model.arch}" if config.model.arch
                else f"checkpoint={config.model.checkpoint}")
        c = fewshot.get_config(f"{arch},method={method}")
        c.unlock()
        c.adapter.start, c.adapter.end = config.adapter.start, config.adapter.end
        c.model.fast_step = mode == "fast"
        prepared[m] = prepare(c, batch, classes, tokens, cached=True)
    return time_alternately(prepared, repeats)


def main(argv):
    del argv
    config = _CONFIG.value
    host.tune_malloc()  # as every command does (adaring_jax/host.py)
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, "
          f"method={config.method}, arch={config.model.arch or config.model.checkpoint} "
          f"(random weights), batch={_BATCH.value}, "
          f"classes={_CLASSES.value}, dtype={backbone.compute_dtype(config.model.dtype)}")
    if _METHODS.value:
        medians = compare_methods(config, _METHODS.value, _BATCH.value,
                                  _CLASSES.value, _PROMPT_TOKENS.value, _REPEATS.value)
        first = _METHODS.value[0]
        for m, t in medians.items():
            print(f"{m:>9}: step {t * 1000:.1f} ms (median of {_REPEATS.value}, alternating), "
                  f"{t / medians[first]:.3f}x the {first} step")
        return
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
