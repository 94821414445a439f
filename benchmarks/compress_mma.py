r"""The compression experiment on the embedded task: train MMA, TR-SVD its adapter stacks into
one-bank AdaRing rings of rank R (`python -m adaring_jax.compress`), and measure the accuracy
kept against the parameters kept, as compressed and after a short fine-tune of the ring.

    python benchmarks/compress_mma.py                        # ranks 1,2,4,8,16, seeds 1-3
    python benchmarks/compress_mma.py --ranks=2,4 --seeds=1 --finetune_steps=64

Every MMA run is the default job with `method=mma` (ROOT/mma/seedS); every compressed run is
what `compress` makes (ROOT/rank{R}_ft{N}/seedS, with `adapter.init_from` pointing at the MMA
run). A run whose results.json exists is not redone, so the script resumes. Writes OUT.md:
per rank, trainable parameters (share of MMA's), the mean relative error of the five kernel
families, and HM as compressed and after N fine-tuning steps (mean +- std over seeds), next to
MMA's own HM.
"""

from __future__ import annotations

import json
import os
import statistics
import sys

from absl import app, flags, logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from adaring_jax import adapters, compress, runs, train  # noqa: E402
from adaring_jax.models import convert  # noqa: E402
from configs import fewshot  # noqa: E402

_RANKS = flags.DEFINE_list("ranks", ["1", "2", "4", "8", "16"], "ring ranks R")
_SEEDS = flags.DEFINE_list("seeds", ["1", "2", "3"], "seeds")
_FINETUNE = flags.DEFINE_integer("finetune_steps", 64, "fine-tuning steps after compressing")
_ROOT = flags.DEFINE_string("root", "runs/compression", "workdirs")
_OUT = flags.DEFINE_string("out", os.path.join(REPO, "docs", "compression"), "writes OUT.md")
_ARGS = flags.DEFINE_string("config_args", "", "extra configs/fewshot.py arguments (smoke: the "
                            "tiny random CLIP, for tests)")


def _run(config, workdir: str) -> dict:
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        train.train_and_evaluate(config, workdir)
    with open(path) as f:
        return json.load(f)


def _stats(xs) -> str:
    return f"{statistics.mean(xs):.2f} +- {statistics.stdev(xs):.2f}" if len(xs) > 1 \
        else f"{xs[0]:.2f}"


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    ranks = [int(r) for r in _RANKS.value]
    steps = _FINETUNE.value
    rows = {r: {"params": 0, "error": [], "hm0": [], "hm": []} for r in ranks}
    mma_hm, mma_params = [], 0
    for seed in _SEEDS.value:
        mma_dir = os.path.join(_ROOT.value, "mma", f"seed{seed}")
        arg = ",".join(filter(None, [f"method=mma,seed={seed}", _ARGS.value]))
        mma = _run(fewshot.get_config(arg), mma_dir)
        mma_hm.append(mma["adapted"]["hm"])
        mma_params = mma["trainable_params"]
        rec = runs.read(mma_dir)
        model_config = convert.architecture(rec.config.model.arch, rec.config.model.checkpoint)
        mma_weights = runs.restore_adapters(rec, adapters.spec_from_config(rec.config,
                                                                           model_config))
        for r in ranks:
            report = compress.compress_report(mma_weights, rec.config, model_config, r)
            rows[r]["error"].append(statistics.mean(e for _, _, e in report.values()))
            for n, key in ((0, "hm0"), (steps, "hm")):
                out = _run(compress.ring_config(rec.config, r, mma_dir, n),
                           os.path.join(_ROOT.value, f"rank{r}_ft{n}", f"seed{seed}"))
                rows[r][key].append(out["adapted"]["hm"])
                rows[r]["params"] = out["trainable_params"]
    lines = [f"MMA (embedded default, `method=mma`) compressed by TR-SVD into one-bank AdaRing "
             f"rings; seeds {', '.join(_SEEDS.value)}; `python benchmarks/compress_mma.py`.",
             "",
             f"| ring rank | trainable params | of MMA | mean rel. error | HM as compressed "
             f"| HM after {steps} steps |",
             "|---|---|---|---|---|---|"]
    for r in ranks:
        row = rows[r]
        lines.append(f"| {r} | {row['params']:,} | {100 * row['params'] / mma_params:.1f}% | "
                     f"{statistics.mean(row['error']):.3f} | {_stats(row['hm0'])} | "
                     f"{_stats(row['hm'])} |")
    lines.append(f"| MMA (dense) | {mma_params:,} | 100% | 0 | {_stats(mma_hm)} | |")
    os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
    with open(_OUT.value + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
