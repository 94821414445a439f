r"""AdaRing's design space, searched under the baselines' budget rules (issue: AdaRing that wins
at 10%). Every candidate is an `adaring` config (docs: the method's design space) of at most
5,760 trainable parameters on the embedded CLIP (10% of MMA's 57,600); each is trained on the
suite's three tuning tasks (experiments/suite.py TUNING_TASKS) over seeds 1-3 only, at the
embedded recipe's rate first; the best candidates then get the same 3-rate grid the baselines
had (suite.LRS). Nothing here reads a seed above 3 or another task.

    python -m experiments.adaring_search                      # stage 1, then the grid
    python -m experiments.adaring_search --plan               # the runs, how many are done
    python -m experiments.adaring_search --candidates=qkv_ls8,branch24 --lrs=0.01

Runs live in ROOT/base2novel/TASK/KEY_lrLR/seedS (suite.py's layout, so a finished run is
read back and the command resumes); the table goes to experiments/adaring_search.md.
"""

from __future__ import annotations

import os
import statistics
import sys

from absl import app, flags

from experiments import suite
from experiments.suite import Variant

BUDGET = 5_760  # 10% of MMA's 57,600 on the embedded CLIP
# Update candidates adapt every block (start=1), as CLIP-LoRA does; the branch keeps MMA's.
_ALL = (("adapter.start", 1),)


def _update(key, label, ranks, sites, ring_modes="layers_sites", **extra):
    fields = _ALL + (("adapter.sites", sites), ("adapter.ring_modes", ring_modes)) + tuple(
        (f"adapter.{k}" if "." not in k else k, v) for k, v in extra.items())
    return Variant(key, "adaring", label, f"ranks={ranks}", fields)


CANDIDATES = (
    Variant("branch24", "adaring", "branch rings 2+4 (the earlier default)",
            "ranks=2+4,sites=branch"),
    _update("qkv_ls8", "dW of q,k,v: one ring over layers x sites, rank 8", "8", "q+k+v"),
    _update("qkvo_ls7", "dW of q,k,v,o: one ring over layers x sites, rank 7", "7", "q+k+v+o"),
    _update("qkv_l4", "dW of q,k,v: a ring per site, rank 4", "4", "q+k+v", "layers"),
    _update("qkv_lr6", "LoRA A,B of q,k,v (r 4): rings over layers x sites, rank 6", "6",
            "q+k+v", update_form="lowrank"),
    _update("qkvo_mlp_63", "dW of q,k,v,o (rank 6) + fc1,fc2 (rank 3), gated", "6+3",
            "q+k+v+o,fc1+fc2"),
    _update("qkv_ls4_whole", "dW of q,k,v over layers x sites, width modes whole, rank 4", "4",
            "q+k+v", max_mode=0),
    _update("qkv_ls8_ce", "qkv_ls8 with cross-entropy only", "8", "q+k+v",
            **{"loss.text_l1": 0.0, "loss.image_l1": 0.0, "loss.kl": 0.0}),
)
BY_KEY = {c.key: c for c in CANDIDATES}

_CANDIDATES = flags.DEFINE_list("candidates", [c.key for c in CANDIDATES], "candidates to run")
_LRS = flags.DEFINE_list("lrs", ["0.01"], "rates of stage 1 (the embedded recipe's: 0.01)")
_GRID = flags.DEFINE_integer("grid", 3, "the best N candidates of stage 1 get suite.LRS")
_SHARD = flags.DEFINE_string("shard", "", "I/N: run only every N-th run from the I-th (parallel "
                             "workers on one machine); prints no table")
_TABLE = flags.DEFINE_bool("table", False, "run nothing; write the table of the finished runs")
_SEARCH_OUT = flags.DEFINE_string("search_out", os.path.join(suite.HERE, "adaring_search.md"),
                                  "the table")


def _mean_hm_all(runs, variants, lrs):
    for v in variants:
        for lr in lrs:
            _mean_hm(runs, v, lr)


def _mean_hm(runs, v, lr):
    hms = [runs("base2novel", t, v, s, lr) for t in suite.TUNING_TASKS for s in ("1", "2", "3")]
    if None in hms:
        return None, None
    per_task = {t: statistics.fmean(h["adapted"]["hm"] for h in hms[i * 3:i * 3 + 3])
                for i, t in enumerate(suite.TUNING_TASKS)}
    return statistics.fmean(h["adapted"]["hm"] for h in hms), (per_task, hms[0]["trainable_params"])


class _Shard:
    """Runs the I-th of every N runs it is asked for; the others count as unfinished."""

    def __init__(self, runs, spec: str):
        self.runs, self.count = runs, 0
        self.i, self.n = map(int, spec.split("/"))

    def __call__(self, *args):
        self.count += 1
        return self.runs(*args) if (self.count - 1) % self.n == self.i else None


def main(argv):
    del argv
    suite.VARIANTS.update(BY_KEY)
    runs = suite.Runs(suite._PLAN.value or _TABLE.value)
    if _SHARD.value:
        _mean_hm_all(_Shard(runs, _SHARD.value), [BY_KEY[k] for k in _CANDIDATES.value],
                     [float(x) for x in _LRS.value])
        return 0
    chosen = [BY_KEY[k] for k in _CANDIDATES.value]
    stage1 = [float(x) for x in _LRS.value]
    scores: dict[str, dict[float, float | None]] = {}
    info = {}
    for v in chosen:
        for lr in stage1:
            scores.setdefault(v.key, {})[lr], extra = _mean_hm(runs, v, lr)
            info[v.key] = extra or info.get(v.key)
    ranked = sorted((k for k in scores if scores[k].get(stage1[0]) is not None),
                    key=lambda k: -scores[k][stage1[0]])
    for k in ranked[:_GRID.value]:
        for lr in suite.LRS:
            if lr not in scores[k]:
                scores[k][lr], extra = _mean_hm(runs, BY_KEY[k], lr)
    lrs = sorted({lr for s in scores.values() for lr in s})
    lines = ["| candidate | params | " + " | ".join(f"lr {lr:g}" for lr in lrs)
             + " | " + " | ".join(t.removeprefix("shapes_") for t in suite.TUNING_TASKS)
             + " (lr 0.01) |", "|---|---|" + "---|" * (len(lrs) + len(suite.TUNING_TASKS))]
    for v in chosen:
        per_task, params = info.get(v.key) or ({}, None)
        over = params is not None and params > BUDGET
        lines.append(f"| {v.key}: {v.label}{' (over budget)' if over else ''} | "
                     f"{'-' if params is None else f'{params:,}'} | "
                     + " | ".join("-" if scores[v.key].get(lr) is None
                                  else f"{scores[v.key][lr]:.2f}" for lr in lrs) + " | "
                     + " | ".join(f"{per_task[t]:.2f}" if t in per_task else "-"
                                  for t in suite.TUNING_TASKS) + " |")
    text = (f"# AdaRing's design space on the tuning tasks\n\nMean base-to-novel HM over "
            f"{', '.join(suite.TUNING_TASKS)} x seeds 1-3; {len(runs.done)} of "
            f"{len(runs.planned)} runs finished.\n\n" + "\n".join(lines) + "\n")
    print(text)
    if not suite._PLAN.value or _TABLE.value:
        with open(_SEARCH_OUT.value, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.argv += [] if any(a.startswith("--root") for a in sys.argv) else ["--root=runs/search"]
    app.run(main)
