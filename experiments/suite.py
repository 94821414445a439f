r"""The evidence suite: the embedded tasks (adaring_jax/data/shapes_suite.py) under the three
protocols of the papers' tables, the ultra-light baselines beside AdaRing, and the front of
accuracy against trainable parameters. One resumable command makes every table and plot:

    python -m experiments.suite                     # all parts, seeds 1-3 -> experiments/suite.md
    python -m experiments.suite --plan              # the runs, and how many are finished
    python -m experiments.suite --parts=base2novel --methods=adaring --seeds=1

Parts, each a table in OUT.md (mean +- sample std over the seeds):
- `tuning`: every trained method gets the same trials (`LRS`, the learning rate: the one knob
  every method has) on the tuning tasks (`TUNING_TASKS`), seeds 1-3 only; the rate with the best
  mean HM is the method's in every other part;
- `base2novel`: per task and the average over tasks, zero-shot CLIP and each method;
- `transfer`: train on `TRANSFER_SOURCE` with all its classes, test on the other tasks (their
  own classes: colour only, shape only, look-alike pairs...);
- `generalization`: train on `DG_SOURCE`, test on the shifted renderings of the same 64 classes;
- `front`: average base-to-novel HM over the suite against trainable parameters, every family
  at 3 sizes or more (OUT_front.png), and the claim at <= 10% of MMA's parameters;
- `banks`: per task, AdaRing's heterogeneous banks against each single-rank ring.

Every run is `python -m adaring_jax.main` with the config in its workdir
(ROOT/PROTOCOL/TASK/VARIANT/seedS); a finished run is read back, not redone, so the command
resumes where it stopped, and an unfinished one resumes from its last checkpoint. The test sets
hold `TEST_IMAGES` images (2,560 per base/novel half: standard error <= 1 point per accuracy).

Measured (2026-12-02, 2 shared CPU cores; experiments/suite.md, the README's Evidence): all
498 runs, about 6.2 hours of run time. Chosen rates: CLIP-LoRA 0.03, the others 0.01. Average
base-to-novel HM over the ten tasks: zero-shot 49.45, CoOp (256 params) 53.89 +- 0.31,
AdaRing rank 4 (3,984) 61.98 +- 1.07, AdaRing 2+4 (5,160) 61.65 +- 1.73, CLIP-LoRA rank 1
(5,760) 63.80 +- 0.05, MMA (57,600) 65.86 +- 0.52. At <= 10% of MMA's parameters AdaRing is
on the front, 3.88 HM below MMA and 1.82 below CLIP-LoRA rank 1. Transfer from `shapes`,
target average: zero-shot 43.59, AdaRing 36.05 +- 1.93, CoOp 32.86, MMA 32.52, CLIP-LoRA 26.41.
That AdaRing was the branch rings (`sites=branch`, now `adaring_b24`).

The update-ring default (2026-12-05, experiments/suite_update_rings.md):

    python -m experiments.suite --parts=base2novel,transfer,generalization,front \
        --methods=adaring,mma --front=clip_lora_r1 --rates=clip_lora:0.03

114 runs; average base-to-novel HM AdaRing (5,172) 64.79 +- 0.44, CLIP-LoRA rank 1 (5,760)
63.80 +- 0.05, MMA (57,600) 65.85 +- 0.56.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time

from absl import app, flags

from adaring_jax import cli
from adaring_jax.data import shapes_suite
from configs import base2novel, cross_dataset, domain_generalization
from experiments.experiments import finished_run, mean_std

HERE = os.path.dirname(os.path.abspath(__file__))
PARTS = ("tuning", "base2novel", "transfer", "generalization", "front", "banks")
TEST_IMAGES = 5120  # 2 x 2,560: sqrt(0.25 / 2560) = 0.99 points at 50% accuracy
SUITE = shapes_suite.SUITE
TUNING_TASKS = ("shapes_mild", "shapes", "shapes_lookalike")  # one per regime: mild/strong/fine
LRS = (0.003, 0.01, 0.03)  # AdamW rates tried for every method (the embedded recipe: 0.01)
TRANSFER_SOURCE = "shapes"
TRANSFER_TARGETS = tuple(t for t in SUITE if t != TRANSFER_SOURCE)
DG_SOURCE = "shapes_mild"
DG_TARGETS = tuple(t for t in SUITE if t not in (DG_SOURCE, "shapes") and
                   len(shapes_suite.TASKS[t].classes) == 64) + ("shapes",)


@dataclasses.dataclass(frozen=True)
class Variant:
    """A method at one size: `arg` is the config argument, `fields` set after it."""
    key: str  # its workdir name
    method: str
    label: str
    arg: str = ""
    fields: tuple[tuple[str, object], ...] = ()


# The main table's methods (each at its paper's size), then the front's other sizes.
MAIN = (Variant("coop", "coop", "CoOp (4 context vectors)"),
        Variant("clip_lora", "clip_lora", "CLIP-LoRA (rank 2)"),
        Variant("mma", "mma", "MMA"),
        Variant("adaring", "adaring", "AdaRing (update rings: attention 6 + MLP 3)"))
FRONT = (Variant("coop_x8", "coop", "CoOp (8 random context vectors)",
                 fields=(("adapter.ctx_init", ""), ("adapter.n_ctx", 8))),
         # 12, not CoOp's 16: the embedded text tower's prompts are 16 tokens (at most 13 fit)
         Variant("coop_x12", "coop", "CoOp (12 random context vectors)",
                 fields=(("adapter.ctx_init", ""), ("adapter.n_ctx", 12))),
         Variant("clip_lora_r1", "clip_lora", "CLIP-LoRA (rank 1)", fields=(("adapter.rank", 1),)),
         Variant("clip_lora_r4", "clip_lora", "CLIP-LoRA (rank 4)", fields=(("adapter.rank", 4),)),
         Variant("mma_h8", "mma", "MMA (bottleneck 8)", fields=(("adapter.hidden", 8),)),
         Variant("mma_h16", "mma", "MMA (bottleneck 16)", fields=(("adapter.hidden", 16),)),
         # The branch form (sites=branch): the earlier default and its sizes.
         Variant("adaring_b24", "adaring", "AdaRing branch (ranks 2+4)", "ranks=2+4,sites=branch"),
         Variant("adaring_r2", "adaring", "AdaRing branch (rank 2)", "ranks=2,sites=branch"),
         Variant("adaring_r4", "adaring", "AdaRing branch (rank 4)", "ranks=4,sites=branch"),
         Variant("adaring_r248", "adaring", "AdaRing branch (ranks 2+4+8)",
                 "ranks=2+4+8,sites=branch"))
VARIANTS = {v.key: v for v in MAIN + FRONT}
BANKS = ("adaring_b24", "adaring_r2", "adaring_r4")  # heterogeneous first, then the singles
ZEROSHOT = Variant("zeroshot", "zeroshot", "zero-shot CLIP")

_PARTS = flags.DEFINE_list("parts", list(PARTS), f"of {', '.join(PARTS)}")
_METHODS = flags.DEFINE_list("methods", [v.key for v in MAIN], "main-table methods")
_FRONT = flags.DEFINE_list("front", [v.key for v in FRONT], "the front's other sizes")
_SEEDS = flags.DEFINE_list("seeds", ["1", "2", "3"], "seeds (tuning always uses 1-3)")
_TASKS = flags.DEFINE_list("tasks", list(SUITE), "suite tasks of the base-to-novel parts")
_ROOT = flags.DEFINE_string("root", "runs/suite", "workdirs: ROOT/PROTOCOL/TASK/VARIANT/seedS")
_OUT = flags.DEFINE_string("out", os.path.join(HERE, "suite"), "writes OUT.md and OUT_*.png")
_PLAN = flags.DEFINE_bool("plan", False, "list the runs and how many are finished; run none")
_SMOKE = flags.DEFINE_bool("smoke", False, "the smoke recipe (tests: seconds per run)")
_RATES = flags.DEFINE_list(
    "rates", [], "METHOD:LR pairs used instead of the tuning part (rates an earlier tuning "
    "chose, e.g. clip_lora:0.03); a method not named trains at its recipe's rate")


def config_of(protocol: str, task: str, variant: Variant, seed: str, lr: float | None):
    """The run's config: the protocol's config file on the embedded CLIP, the suite's test
    size, the variant's size and the tuned learning rate."""
    arg = ",".join(filter(None, [f"method={variant.method}", f"dataset={task}", f"seed={seed}",
                                 variant.arg, "smoke" if _SMOKE.value else ""]))
    module = {"base2novel": base2novel, "transfer": cross_dataset,
              "generalization": domain_generalization}[protocol]
    config = module.get_config(arg)
    config.unlock()
    if not _SMOKE.value:
        config.data.shapes_size.test = TEST_IMAGES
    if protocol == "transfer":
        config.data.eval_datasets = TRANSFER_TARGETS
    if protocol == "generalization":  # the source's own test set first, as in the tables
        config.data.eval_datasets = (DG_SOURCE, *DG_TARGETS)
    for key, value in variant.fields:
        *path, last = key.split(".")
        node = config
        for p in path:
            node = node[p]
        node[last] = value
    if lr is not None and variant.method != "zeroshot":
        config.optim.lr = lr
    config.lock()
    return config


def workdir(protocol, task, variant, seed, config) -> str:
    name = variant.key if variant.method == "zeroshot" else f"{variant.key}_lr{config.optim.lr:g}"
    return os.path.abspath(os.path.join(_ROOT.value, protocol, task, name, f"seed{seed}"))


class Runs:
    """Runs a (protocol, task, variant, seed, lr) unless finished; or, with --plan, counts.
    `lr` None: the recipe's rate."""

    def __init__(self, plan: bool):
        self.plan, self.planned, self.done, self.seconds = plan, set(), set(), 0.0

    def __call__(self, protocol, task, variant, seed, lr=None) -> dict | None:
        config = config_of(protocol, task, variant, seed, lr)
        where = workdir(protocol, task, variant, seed, config)
        finished = os.path.exists(os.path.join(where, "results.json"))
        self.planned.add(where)
        if self.plan and not finished:
            return None
        start = time.monotonic()
        if not finished:
            rate = "" if variant.method == "zeroshot" else f" lr {config.optim.lr:g}"
            print(f"[{len(self.done)}/{len(self.planned)}] {protocol} {task} {variant.key} "
                  f"seed {seed}{rate}", file=sys.stderr, flush=True)
        results = finished_run(config, where)
        self.seconds += 0 if finished else time.monotonic() - start
        self.done.add(where)
        return results


def _seeds(key, seeds):
    """Zero-shot CLIP does not depend on the seed (no draw, no init): one run."""
    return seeds[:1] if key == "zeroshot" else seeds


def _cell(values) -> str:
    """mean +- sample std over seeds; one seed: its value."""
    if not values or None in values:
        return "-"
    mean, std = mean_std(values)
    return f"{mean:.2f}" if len(values) == 1 else f"{mean:.2f} +- {std:.2f}"


def _hm(results) -> float:
    return results["adapted"]["hm"]


def tune(runs: Runs, methods) -> tuple[dict, list[str]]:
    """{method key: chosen lr} and the tuning table's lines."""
    lines = ["| method | " + " | ".join(f"lr {lr:g}" for lr in LRS) + " | chosen |",
             "|---|" + "---|" * (len(LRS) + 1)]
    chosen = {}
    for key in methods:
        v = VARIANTS[key]
        scores = {}
        for lr in LRS:
            hms = [runs("base2novel", t, v, s, lr) for t in TUNING_TASKS for s in ("1", "2", "3")]
            scores[lr] = None if None in hms else statistics.fmean(map(_hm, hms))
        known = {lr: x for lr, x in scores.items() if x is not None}
        chosen[key] = max(known, key=known.get) if len(known) == len(LRS) else None
        lines.append(f"| {v.label} | " + " | ".join("-" if x is None else f"{x:.2f}"
                                                    for x in scores.values())
                     + f" | {'-' if chosen[key] is None else f'{chosen[key]:g}'} |")
    return chosen, lines


def base_to_novel(runs, keys, lrs, seeds, tasks) -> tuple[dict, list[str]]:
    """{key: [per-seed average HM over tasks]} and the table (rows: methods; columns: tasks)."""
    header = "| method | params | " + " | ".join(t.removeprefix("shapes_") for t in tasks)
    lines = [header + " | average |", "|---|---|" + "---|" * (len(tasks) + 1)]
    averages = {}
    for key in ["zeroshot", *keys]:
        v = ZEROSHOT if key == "zeroshot" else VARIANTS[key]
        lr = None if key == "zeroshot" else lrs.get(key)
        if key != "zeroshot" and lr is None:
            continue  # its tuning is not finished
        grid = {t: [runs("base2novel", t, v, s, lr) for s in _seeds(key, seeds)] for t in tasks}
        done = all(r is not None for rs in grid.values() for r in rs)
        kind = "zeroshot" if key == "zeroshot" else "adapted"
        cells = [_cell([r[kind]["hm"] for r in rs] if done else [None]) for rs in grid.values()]
        per_seed = ([statistics.fmean(grid[t][i][kind]["hm"] for t in tasks)
                     for i in range(len(_seeds(key, seeds)))] if done else None)
        params = grid[tasks[0]][0]["trainable_params"] if done and kind == "adapted" else 0
        averages[key] = (params, per_seed)
        lines.append(f"| {v.label} | {params:,} | " + " | ".join(cells)
                     + f" | {_cell(per_seed or [None])} |")
    return averages, lines


def transfer_table(runs, protocol, source, targets, keys, lrs, seeds) -> list[str]:
    lines = [f"| method | {source} (source) | " + " | ".join(targets) + " | average |",
             "|---|---|" + "---|" * (len(targets) + 1)]
    for key in ["zeroshot", *keys]:
        v = ZEROSHOT if key == "zeroshot" else VARIANTS[key]
        lr = None if key == "zeroshot" else lrs.get(key)
        if key != "zeroshot" and lr is None:
            continue
        rs = [runs(protocol, source, v, s, lr) for s in _seeds(key, seeds)]
        if None in rs:
            lines.append(f"| {v.label} | " + " | ".join("-" * (len(targets) + 2)) + " |")
            continue
        kind = "zeroshot" if key == "zeroshot" else "adapted"
        cols = [source] if source in rs[0][kind] else []
        cells = [_cell([r[kind][c] for r in rs]) for c in cols + list(targets)]
        average = [statistics.fmean(r[kind][t] for t in targets) for r in rs]
        lines.append(f"| {v.label} | " + (" | ".join(cells) if cols else "- | " + " | ".join(cells))
                     + f" | {_cell(average)} |")
    return lines


def front(averages: dict) -> tuple[list[str], str]:
    """The table of (params, average HM) per variant, the front's members and the claim."""
    points = {k: (p, mean_std(hms)[0]) for k, (p, hms) in averages.items()
              if hms is not None and k != "zeroshot"}
    on_front = {k for k, (p, hm) in points.items()  # nothing as small is as good
                if not any(q <= p and h >= hm and (q, h) != (p, hm)
                           for j, (q, h) in points.items() if j != k)}
    lines = ["| variant | trainable params | average HM (mean +- std over seeds) | on the front |",
             "|---|---|---|---|"]
    for k, (p, hm) in sorted(points.items(), key=lambda kv: kv[1][0]):
        lines.append(f"| {VARIANTS[k].label} | {p:,} | {_cell(averages[k][1])} | "
                     f"{'yes' if k in on_front else 'no'} |")
    claim = "The front is not measured yet."
    ring = {k: v for k, v in points.items() if VARIANTS[k].method == "adaring"}
    if "mma" in points and ring:
        budget = 0.1 * points["mma"][0]
        light = {k: v for k, v in ring.items() if v[0] <= budget}
        if not light:
            return lines, f"No AdaRing variant has <= 10% of MMA's {points['mma'][0]:,} parameters."
        best = max(light, key=lambda k: light[k][1])
        p, hm = light[best]
        rivals = {k: v for k, v in points.items() if VARIANTS[k].method != "adaring"
                  and v[0] <= p}
        against = (f"; the best other method with at most as many, "
                   f"{VARIANTS[max(rivals, key=lambda k: rivals[k][1])].label}, has "
                   f"{max(v[1] for v in rivals.values()):.2f} "
                   f"({hm - max(v[1] for v in rivals.values()):+.2f} HM)") if rivals else \
            "; no other method is that small"
        # The best point of any family within the same budget (<= 10% of MMA's).
        within = {k: v for k, v in points.items() if v[0] <= budget}
        top = max(within, key=lambda k: within[k][1])
        in_budget = ("; it is also the best point within that budget" if top == best else
                     f"; the best point within that budget is {VARIANTS[top].label} "
                     f"({within[top][0]:,} parameters, {within[top][1]:.2f}, "
                     f"{hm - within[top][1]:+.2f} HM)")
        claim = (f"At <= 10% of MMA's parameters, the best AdaRing is {VARIANTS[best].label}: "
                 f"{p:,} parameters ({p / points['mma'][0]:.1%} of MMA's), average HM "
                 f"{hm:.2f}, {'on' if best in on_front else 'not on'} the front; MMA has "
                 f"{points['mma'][1]:.2f} ({hm - points['mma'][1]:+.2f} HM){against}"
                 f"{in_budget}.")
    return lines, claim


def plot_front(averages: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    families = {}
    for k, (p, hms) in averages.items():
        if hms is not None and k != "zeroshot":
            families.setdefault(VARIANTS[k].method, []).append((p, *mean_std(hms)))
    for method, pts in sorted(families.items()):
        pts.sort()
        ax.errorbar([p for p, _, _ in pts], [m for _, m, _ in pts], [s for _, _, s in pts],
                    marker="o", capsize=3, label=method)
    if "zeroshot" in averages and averages["zeroshot"][1]:
        ax.axhline(mean_std(averages["zeroshot"][1])[0], color="grey", ls=":",
                   label="zero-shot")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("average HM over the suite (%), mean +- std over seeds")
    ax.set_title("Embedded suite: accuracy against trainable parameters")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def banks_table(runs, lrs, seeds, tasks) -> list[str]:
    """Per task: HM of the heterogeneous AdaRing and of each single-rank ring."""
    keys = [k for k in BANKS if lrs.get(k) is not None]
    lines = ["| task | " + " | ".join(VARIANTS[k].label for k in keys)
             + " | heterogeneous - best single |", "|---|" + "---|" * (len(keys) + 1)]
    for t in tasks:
        hms = {k: [runs("base2novel", t, VARIANTS[k], s, lrs[k]) for s in seeds] for k in keys}
        if any(None in rs for rs in hms.values()):
            lines.append(f"| {t} | " + " | ".join("-" * (len(keys) + 1)) + " |")
            continue
        means = {k: statistics.fmean(map(_hm, rs)) for k, rs in hms.items()}
        mixed = BANKS[0]
        singles = [means[k] for k in keys if k != mixed]
        diff = f"{means[mixed] - max(singles):+.2f}" if mixed in means and singles else "-"
        lines.append(f"| {t} | " + " | ".join(_cell(list(map(_hm, hms[k]))) for k in keys)
                     + f" | {diff} |")
    return lines


def _recipe_lr(key) -> float:
    return base2novel.get_config(f"method={VARIANTS[key].method}").optim.lr


def _rates() -> dict[str, float]:
    """--rates as {method: lr}; a malformed pair or an unknown method is a usage error."""
    rates, methods = {}, {v.method for v in VARIANTS.values()}
    for pair in _RATES.value:
        method, _, lr = pair.partition(":")
        try:
            rates[method] = float(lr)
        except ValueError:
            raise cli.UsageError(f"--rates takes METHOD:LR pairs, got {pair!r}") from None
        if method not in methods or rates[method] <= 0:
            raise cli.UsageError(f"--rates {pair!r}: methods are {', '.join(sorted(methods))}, "
                                 "rates are positive")
    if rates and "tuning" in _PARTS.value:
        raise cli.UsageError("--rates replaces the tuning part: leave `tuning` out of --parts")
    return rates


def main(argv):
    del argv
    return cli.run(_main)  # a stop (SIGTERM, Ctrl-C) or a bad run: one line, not a traceback


def _main():
    unknown = sorted(set(_PARTS.value) - set(PARTS))
    unknown += sorted(set(_METHODS.value + _FRONT.value) - set(VARIANTS))
    unknown += sorted(set(_TASKS.value) - set(SUITE))
    if unknown:
        raise cli.UsageError(f"unknown parts, methods or tasks {unknown}; parts: "
                             f"{', '.join(PARTS)}; methods: {', '.join(VARIANTS)}; tasks: "
                             f"{', '.join(SUITE)}")
    runs, parts, seeds, tasks = Runs(_PLAN.value), _PARTS.value, _SEEDS.value, _TASKS.value
    front_keys = _FRONT.value if "front" in parts or "banks" in parts else []
    keys = list(dict.fromkeys(_METHODS.value + front_keys))
    # Each variant trains at its method's tuned rate (None: tuning unfinished, left out of
    # the tables); without the tuning part, at the recipe's.
    lrs = {k: None for k in keys}
    tuning_lines = []
    if "tuning" in parts:
        chosen, tuning_lines = tune(runs, [k for k in _METHODS.value if k in VARIANTS])
        by_method = {VARIANTS[k].method: lr for k, lr in chosen.items()}
        lrs = {k: by_method.get(VARIANTS[k].method) for k in keys}
        if _PLAN.value:  # count the runs after tuning as if at the recipe's rate
            lrs = {k: lr or _recipe_lr(k) for k, lr in lrs.items()}
    else:
        given = _rates()
        lrs = {k: given.get(VARIANTS[k].method, _recipe_lr(k)) for k in keys}
    sections = []
    if tuning_lines:
        sections += ["## Tuning (seeds 1-3, tasks " + ", ".join(TUNING_TASKS) + ")",
                     "", *tuning_lines, ""]
    averages = {}
    if {"base2novel", "front"} & set(parts):
        averages, lines = base_to_novel(runs, keys, lrs, seeds, tasks)
        sections += ["## Base-to-novel HM per task", "", *lines, ""]
    if "transfer" in parts:
        sections += ["## Cross-task transfer (accuracy)", "", *transfer_table(
            runs, "transfer", TRANSFER_SOURCE, TRANSFER_TARGETS, _METHODS.value, lrs, seeds), ""]
    if "generalization" in parts:
        sections += ["## Domain generalization (accuracy)", "", *transfer_table(
            runs, "generalization", DG_SOURCE, DG_TARGETS, _METHODS.value, lrs, seeds), ""]
    if "front" in parts:
        lines, claim = front(averages)
        sections += ["## The front", "", *lines, "", claim, ""]
    if "banks" in parts:
        sections += ["## Heterogeneous banks per task (HM)", "",
                     *banks_table(runs, lrs, seeds, tasks), ""]
    status = (f"{len(runs.done)} of {len(runs.planned)} runs finished"
              + ("" if _PLAN.value else f"; {runs.seconds / 60:.1f} min of runs this call"))
    if _PLAN.value:
        print(status)
        return
    text = "\n".join(["# The evidence suite", "", f"Seeds {', '.join(seeds)}; {status}.", "",
                      *sections])
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value + ".md", "w") as f:
        f.write(text)
    if "front" in parts and averages:
        plot_front(averages, _OUT.value + "_front.png")
    print(text)


if __name__ == "__main__":
    app.run(main)
