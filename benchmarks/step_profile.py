r"""Where a train step's time goes, by XLA operation kind: a `jax.profiler` trace of a few
steps of the compiled step (random weights, `benchmarks/train_step.py`), read back and
summed per kind of operation.

    python -m benchmarks.step_profile                              # the embedded job's step
    python -m benchmarks.step_profile --config=configs/fewshot.py:arch=vit_b16 --batch=8 \
        --classes=100 --steps=3

For every XLA CPU thread the trace records each operation as a span (a fusion, a copy, a
while loop...). A span's own time is its length less that of the spans inside it; summed over
the threads and divided by the steps traced, it is the thread time per step of that kind.
Kinds: `dot` (matrix products: XLA's `dot` and the YNNPACK/oneDNN fusions that run them),
`loop` (a `while` loop's own bookkeeping: a `lax.scan` over layers), `memory` (copies,
broadcasts, (dynamic-)slices and -update-slices, concatenates, transposes: data moved, nothing
computed), `elementwise` (other fusions), `runtime` (the thunk executor between operations).
The thread time of a step can exceed its wall time (XLA runs independent operations on
several threads) or fall short of it (threads wait on each other and on Python). The
numbers are shares, measured in this one process; run `benchmarks/step_time.py` for times.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import statistics
import tempfile

import jax
from absl import app, flags
from ml_collections import config_flags

from adaring_jax import host
from benchmarks import train_step

_CONFIG = config_flags.DEFINE_config_file("config", "configs/fewshot.py",
                                          "Experiment config (random weights).",
                                          lock_config=False)
_BATCH = flags.DEFINE_integer("batch", 16, "Global batch size (the embedded job's: 16).")
_CLASSES = flags.DEFINE_integer("classes", 32, "Class prompts (the embedded job's base: 32).")
_TOKENS = flags.DEFINE_integer("prompt_tokens", 10, "Tokens per class prompt.")
_STEPS = flags.DEFINE_integer("steps", 20, "Steps timed, then as many traced (after 3 "
                             "warm-up steps).")
_TOP = flags.DEFINE_integer("top", 8, "Also list the N operations with the most time.")

KINDS = ("dot", "loop", "memory", "elementwise", "runtime")
_MEMORY = re.compile(r"(^|_)(copy|broadcast|slice|dynamic-slice|dynamic-update-slice|"
                     r"concatenate|transpose|pad|gather|bitcast)(_|$)")


def kind_of(name: str) -> str | None:
    """The kind of an XLA CPU trace span by its name (None: not an operation of the step)."""
    base = re.sub(r"[._]\d+$", "", name)
    if base.startswith("ThunkExecutor::Execute"):
        return None if "wait" in base else "runtime"
    if re.search(r"(^|_)(dot|convolution)(_|$)|ynn_fusion|xnn_fusion|onednn", base):
        return "dot"
    if base.startswith("while"):
        return "loop"
    parts = base.removeprefix("wrapped_").removesuffix("_fusion").split("_")
    if parts and all(_MEMORY.search(p) for p in parts):
        return "memory"
    return "elementwise" if "fusion" in base or base.startswith("wrapped_") else None


def own_times(events: list[dict], threads: dict) -> collections.Counter:
    """{span name: own microseconds summed over the XLA threads} of trace events."""
    spans = collections.defaultdict(list)
    for e in events:
        name = threads.get((e.get("pid"), e.get("tid")), "")
        if e.get("ph") == "X" and ("XLAEigen" in name or "PjRtCpuClient" in name):
            spans[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"], e["name"]))
    own = collections.Counter()
    for seq in spans.values():
        seq.sort(key=lambda s: (s[0], -s[1]))
        stack = []
        for start, stop, name in seq:
            while stack and stack[-1][0] <= start:
                stack.pop()
            if stack:
                own[stack[-1][1]] -= stop - start
            own[name] += stop - start
            stack.append((stop, name))
    return own


def read_trace(log_dir: str) -> tuple[list[dict], dict]:
    path = sorted(glob.glob(os.path.join(log_dir, "plugins", "profile", "*",
                                         "perfetto_trace.json.gz")))[-1]
    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    return events, threads


def profile(prepared: dict, steps: int) -> tuple[dict, collections.Counter, float]:
    """({kind: thread ms per step}, {operation: own us in all}, median ms of an untraced
    step: tracing slows the steps it records)."""
    for _ in range(3):
        train_step.run_once(prepared)
    wall = 1e3 * statistics.median(train_step.run_once(prepared) for _ in range(steps))
    with tempfile.TemporaryDirectory() as log_dir:
        with jax.profiler.trace(log_dir, create_perfetto_trace=True):
            for _ in range(steps):
                train_step.run_once(prepared)
        events, threads = read_trace(log_dir)
    own = own_times(events, threads)
    kinds = dict.fromkeys(KINDS, 0.0)
    for name, us in own.items():
        k = kind_of(name)
        if k is not None:
            kinds[k] += us / 1e3 / steps
    return kinds, own, wall


def main(argv):
    del argv
    config = _CONFIG.value
    host.tune_malloc()
    prepared = train_step.prepare(config, _BATCH.value, _CLASSES.value, _TOKENS.value, True)
    kinds, own, wall = profile(prepared, _STEPS.value)
    total = sum(kinds.values())
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, "
          f"method={config.method}, arch={config.model.arch or config.model.checkpoint}, batch={_BATCH.value}, "
          f"classes={_CLASSES.value}; step {wall:.1f} ms (median of {_STEPS.value} untraced); "
          f"thread time per step by kind ({_STEPS.value} steps traced):")
    print("| kind | ms per step | share |\n|---|---|---|")
    for k in KINDS:
        print(f"| {k} | {kinds[k]:.2f} | {100 * kinds[k] / max(total, 1e-9):.1f}% |")
    print(f"| all | {total:.2f} | 100% |")
    print(f"top {_TOP.value} operations (own ms per step):")
    for name, us in own.most_common(_TOP.value):
        print(f"  {us / 1e3 / _STEPS.value:8.2f}  {name} ({kind_of(name)})")


if __name__ == "__main__":
    app.run(main)
