r"""The wall clock of a table, not of a step: one method over seeds plus the zero-shot row,
with the caches off (every run compiles and evaluates zero-shot CLIP itself) and warm.

    python -m benchmarks.table_time                       # the evidence table: adaring, seeds 1-3
    python -m benchmarks.table_time --table=suite --task=shapes_medium
    python -m benchmarks.table_time --method=mma --seeds=1,2

Tables (`--table`):
- `evidence` (default): the embedded evidence table (experiments/embedded_evidence.py), whose
  21 runs took an hour: each run is the default job (`configs/fewshot.py`: base-to-novel on
  the shapes world's target domain, 12,800 + 12,800 test images) at one seed;
- `suite`: the evidence suite's base-to-novel config (experiments/suite.py) on `--task`, with
  its 2,560 + 2,560 test images: training is a larger share of each run.

Each pass runs the table's runs one after another as `python -m adaring_jax.main` processes
in fresh workdirs:
1. before: the code of `--before` (default `BEFORE`, the last commit before the time-to-a-table
   work: no caches, glibc's malloc defaults, every image decoded each epoch, 4 reader threads),
   taken from this clone's git history (`git archive`) into the run folder;
2. caches off (`ADARING_CACHE=0`): today's code, every run compiling and evaluating zero-shot
   CLIP itself;
3. caches on, cold, in an empty cache folder (not reported: it fills the caches);
4. caches warm: the same runs again in new workdirs.
Per pass it prints the wall clock and its split from each run's results.json: process start
and backbone/task preparation (`prepare`), the first step (compile), the other training
steps, evaluation (zero-shot and adapted, decoding included); and the ratios before / warm and
off / warm. The results must be identical in every pass. All passes run in this one script on
the same machine, so only the ratios carry over. Measured (2026-12-02, 2 idle cores, clean clone):
before 296.5 s, off 187.1 s, warm 122.3 s: 2.42x (README "Time to a table").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_TABLE = flags.DEFINE_enum("table", "evidence", ["evidence", "suite"],
                           "evidence: the default job per seed; suite: the suite's config")
_TASK = flags.DEFINE_string("task", "shapes_medium", "suite task (dataset name; --table=suite)")
_METHOD = flags.DEFINE_string("method", "adaring", "method of the table's row")
_SEEDS = flags.DEFINE_list("seeds", ["1", "2", "3"], "seeds of the row")
_SMOKE = flags.DEFINE_bool("smoke", False, "the smoke recipe (tests: seconds per run)")
_ZEROSHOT_ROW = flags.DEFINE_bool("zeroshot_row", True, "run the table's zero-shot row (tests "
                                  "leave it out: every pass then runs the seeds only)")
_ROOT = flags.DEFINE_string("root", "", "workdirs and caches ('' = a fresh temporary folder)")
_BEFORE = flags.DEFINE_string("before", "", "git revision of the 'before' pass ('' = BEFORE; "
                              "'none': skip the pass)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("prepare", "compile", "train", "eval", "other")
BEFORE = "5912206"  # the parent of bc51f01, the first commit of the time-to-a-table issue


def _config_file() -> str:
    return "configs/fewshot.py" if _TABLE.value == "evidence" else "configs/base2novel.py"


def _runs():
    """(config argument, label) of the table's runs: the zero-shot row, then the seeds."""
    extra = ",smoke" if _SMOKE.value else ""
    task = "" if _TABLE.value == "evidence" else f"dataset={_TASK.value},"
    rows = [(f"method=zeroshot,{task}seed=1{extra}", "zero-shot")] if _ZEROSHOT_ROW.value else []
    rows += [(f"method={_METHOD.value},{task}seed={s}{extra}",
              f"{_METHOD.value} seed {s}") for s in _SEEDS.value]
    return rows


def _source(top: str, rev: str) -> str:
    """The project's files at `rev`, extracted into `top/source-REV` (a folder to run in)."""
    where = os.path.join(top, f"source-{rev}")
    if not os.path.isdir(where):
        archive = subprocess.run(["git", "-C", ROOT, "archive", rev], capture_output=True)
        if archive.returncode != 0:
            raise SystemExit(f"the 'before' pass needs revision {rev} of this clone's history "
                             f"(git archive said: {archive.stderr.decode().strip()}); fetch the "
                             "history, or pass --before=none")
        os.makedirs(where)
        subprocess.run(["tar", "-x", "-C", where], input=archive.stdout, check=True)
    return where


def _pass(top: str, name: str, env: dict, cwd: str = ROOT) -> dict:
    """Run the table in `top/name` with the code in `cwd`; seconds per part, summed over its
    runs (a revision that records no split has it all in `other`)."""
    totals = dict.fromkeys(PARTS, 0.0)
    wall = 0.0
    results = []
    for arg, _ in _runs():
        workdir = os.path.join(top, name, arg.replace(",", "_").replace("=", "-"))
        cmd = [sys.executable, "-m", "adaring_jax.main", f"--config={_config_file()}:{arg}",
               f"--workdir={workdir}"]
        if _TABLE.value == "suite" and not _SMOKE.value:
            cmd.append("--config.data.shapes_size.test=5120")  # the suite's test size
        start = time.monotonic()
        out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - start
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
        with open(os.path.join(workdir, "results.json")) as f:
            r = json.load(f)
        results.append({k: r.get(k) for k in ("zeroshot", "adapted")})
        first = r.get("first_step_seconds", 0.0)
        parts = {"prepare": r.get("prepare_seconds", 0.0), "compile": first,
                 "train": r.get("train_seconds", 0.0) - first, "eval": r.get("eval_seconds", 0.0)}
        parts["other"] = seconds - sum(parts.values())  # start-up, imports, writing
        for k, v in parts.items():
            totals[k] += v
        wall += seconds
    return {"wall": wall, **totals, "results": results}


def main(argv):
    del argv
    top = _ROOT.value or tempfile.mkdtemp(prefix="adaring-table-time-")
    base = {k: v for k, v in os.environ.items()
            if k not in ("JAX_COMPILATION_CACHE_DIR", "ADARING_CACHE")}
    base.update(HF_HUB_OFFLINE="1", ADARING_CACHE_DIR=os.path.join(top, "caches"))
    rev = _BEFORE.value or BEFORE
    passes = {}
    if rev != "none":
        passes["before"] = _pass(top, "before", base, _source(top, rev))
    passes["off"] = _pass(top, "off", {**base, "ADARING_CACHE": "0"})
    _pass(top, "cold", base)
    passes["warm"] = warm = _pass(top, "warm", base)
    same = all(p["results"] == warm["results"] for p in passes.values())
    where = "the default job" if _TABLE.value == "evidence" else f"suite task {_TASK.value}"
    zeroshot = "zero-shot + " if _ZEROSHOT_ROW.value else ""
    print(f"table: {where}, {zeroshot}{_METHOD.value} seeds {','.join(_SEEDS.value)} "
          f"({len(_runs())} runs, one after another)")
    print("| pass | wall s | " + " | ".join(PARTS) + " |")
    print("|---|---|" + "---|" * len(PARTS))
    for name, p in passes.items():
        label = f"before ({rev})" if name == "before" else name
        print(f"| {label} | {p['wall']:.1f} | " + " | ".join(f"{p[k]:.1f}" for k in PARTS) + " |")
    for name, p in passes.items():
        if name != "warm":
            print(f"warm caches vs {name}: {p['wall'] / warm['wall']:.2f}x faster")
    print(f"results {'identical' if same else 'DIFFER'} in every pass")
    if not same:
        raise SystemExit("a pass changed a result")


if __name__ == "__main__":
    app.run(main)
