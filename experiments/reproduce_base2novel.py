r"""Base-to-novel reproduction on real data: 11 datasets x 3 seeds, one job each, then the
paper-style table next to the published numbers (docs/results.md, "The published numbers we
compare against").

    python -m experiments.reproduce_base2novel --method=adaring \
        --checkpoint=openai/clip-vit-base-patch16 --data_dir=DATA --root=runs/b2n

Each job is `python -m adaring_jax.main --config=configs/base2novel.py:dataset=D,seed=S,...`
with workdir ROOT/METHOD/D/seedS. A job whose workdir holds results.json is finished and skipped;
an interrupted one resumes from its own Orbax checkpoint when the script runs again, so the
script can be killed and rerun at any time (or given `--max_jobs` per invocation on a
time-sliced machine). `--print_commands` lists the unfinished jobs' commands instead (one per
line, for a cluster's job array). The table goes to ROOT/METHOD/table.md.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from adaring_jax.data import presets

# ViT-B/16, mean of the 11 datasets and 3 seeds (base, novel, HM, params); docs/results.md,
# "The published numbers we compare against".
PUBLISHED = {
    "zero-shot CLIP": (69.34, 74.22, 71.70, 0),
    "PromptSRC": (84.26, 76.10, 79.97, 46_080),
    "MMA": (83.20, 76.80, 79.87, 674_560),
}

_METHOD = flags.DEFINE_enum("method", "adaring", ["zeroshot", "mma", "adaring"], "method")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "openai/clip-vit-base-patch16",
                                  "HF CLIP directory or hub id")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "CoOp folders and/or TFDS data")
_SPLIT_DIR = flags.DEFINE_string("split_dir", "", "CoOp split files for TFDS data (README, "
                                 "Comparability); '' = data_dir")
_ROOT = flags.DEFINE_string("root", "runs/b2n", "one workdir per method/dataset/seed below")
_DATASETS = flags.DEFINE_list("datasets", list(presets.BENCHMARK), "datasets to run")
_SEEDS = flags.DEFINE_list("seeds", ["1", "2", "3"], "seeds to run")
_CONFIG_ARGS = flags.DEFINE_string("config_args", "",
                                   "extra `key=value` config arguments (e.g. ranks=2+4+8)")
_SET = flags.DEFINE_multi_string("set", [], "extra `--config.` overrides, e.g. optim.steps=2")
_MAX_JOBS = flags.DEFINE_integer("max_jobs", 0, "> 0: stop after this many jobs")
_PRINT = flags.DEFINE_bool("print_commands", False, "print unfinished jobs' commands, run none")


def workdir(root: str, method: str, dataset: str, seed: str) -> str:
    return os.path.abspath(os.path.join(root, method, dataset, f"seed{seed}"))


def command(dataset: str, seed: str) -> list[str]:
    arg = f"dataset={dataset},seed={seed},method={_METHOD.value}"
    if _CHECKPOINT.value and "arch=" not in _CONFIG_ARGS.value:
        arg += f",checkpoint={_CHECKPOINT.value}"  # as an argument: the config follows it
    if _CONFIG_ARGS.value:
        arg += "," + _CONFIG_ARGS.value
    cmd = [sys.executable, "-m", "adaring_jax.main",
           f"--config={os.path.join(REPO, 'configs', 'base2novel.py')}:{arg}",
           f"--workdir={workdir(_ROOT.value, _METHOD.value, dataset, seed)}"]
    if _DATA_DIR.value:
        cmd.append(f"--config.data.data_dir={_DATA_DIR.value}")
    if _SPLIT_DIR.value:
        cmd.append(f"--config.data.split_dir={_SPLIT_DIR.value}")
    return cmd + [f"--config.{kv}" for kv in _SET.value]


def load_results(root: str, method: str, datasets, seeds) -> dict:
    """{dataset: [results.json dicts of finished seeds]}."""
    out = {}
    for d in datasets:
        for s in seeds:
            path = os.path.join(workdir(root, method, d, s), "results.json")
            if os.path.exists(path):
                with open(path) as f:
                    out.setdefault(d, []).append(json.load(f))
    return out


def table(results: dict, datasets, seeds, method: str) -> str:
    """Markdown: per-dataset mean over seeds (base, novel, HM), the mean row, published rows."""
    rows = ["| dataset | base | novel | HM | seeds |", "|---|---|---|---|---|"]
    means = []
    for d in datasets:
        runs = results.get(d, [])
        if not runs:
            rows.append(f"| {d} | - | - | - | 0/{len(seeds)} |")
            continue
        acc = [tuple(r["adapted"][k] for k in ("base", "novel", "hm")) for r in runs]
        m = tuple(statistics.fmean(a[i] for a in acc) for i in range(3))
        means.append(m)
        # Runs whose splits or draws are not the published ones (results.json "comparability").
        off = sum(r.get("comparability", {}).get("comparable") is False for r in runs)
        mark = f" ({off} not comparable)" if off else ""
        rows.append(f"| {d} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} | "
                    f"{len(runs)}/{len(seeds)}{mark} |")
    params = next((r["trainable_params"] for rs in results.values() for r in rs), 0)
    if means:
        avg = [statistics.fmean(m[i] for m in means) for i in range(3)]
        label = "**mean**" if len(means) == len(datasets) else f"mean of {len(means)} datasets"
        rows.append(f"| {label} | {avg[0]:.2f} | {avg[1]:.2f} | {avg[2]:.2f} | |")
    lines = [f"## Base-to-novel, method `{method}` ({params:,} trainable parameters)", "",
             *rows, "", "Published (ViT-B/16, mean of 11 datasets x 3 seeds):", "",
             "| method | base | novel | HM | trainable params |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {b:.2f} | {n:.2f} | {h:.2f} | {p:,} |"
              for name, (b, n, h, p) in PUBLISHED.items()]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    unknown = sorted(set(_DATASETS.value) - set(presets.DATASETS))
    if unknown:
        raise app.UsageError(f"unknown datasets {unknown}; valid: {', '.join(presets.DATASETS)}")
    jobs = [(d, s) for d in _DATASETS.value for s in _SEEDS.value]
    ran = 0
    for d, s in jobs:
        wd = workdir(_ROOT.value, _METHOD.value, d, s)
        if os.path.exists(os.path.join(wd, "results.json")):
            if not _PRINT.value:
                print(f"skip {d} seed {s}: finished ({wd}/results.json)", flush=True)
            continue
        cmd = command(d, s)
        if _PRINT.value:
            print(" ".join(cmd))
            continue
        if _MAX_JOBS.value and ran >= _MAX_JOBS.value:
            print(f"stopping after {ran} jobs (--max_jobs); rerun to continue", flush=True)
            break
        print(f"run {d} seed {s}: {' '.join(cmd)}", flush=True)
        os.makedirs(wd, exist_ok=True)
        with open(os.path.join(wd, "job.log"), "a") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        ran += 1
        if rc != 0:
            sys.exit(f"job {d} seed {s} failed (exit {rc}); see {wd}/job.log. Rerunning this "
                     "script resumes it and skips finished jobs.")
    if _PRINT.value:
        return
    md = table(load_results(_ROOT.value, _METHOD.value, _DATASETS.value, _SEEDS.value),
               _DATASETS.value, _SEEDS.value, _METHOD.value)
    out = os.path.join(_ROOT.value, _METHOD.value, "table.md")
    with open(out, "w") as f:
        f.write(md)
    print(md + f"\nwritten to {out}")


if __name__ == "__main__":
    app.run(main)
