r"""The fidelity sweep (issue 13): AdaRing variants at <= 10% of MMA's parameters against MMA
variants, the same number of trials each, over the tuning seeds 1-3 -> a table and a plot.
Most trials change one axis of the base; the rest combine what helped there (chosen from the
seeds 1-3 results); the total per method is the same.

    python -m experiments.fidelity_sweep                      # every trial, seeds 1-3
    python -m experiments.fidelity_sweep --trials=ring_default,mma_default --seeds=1
    python -m experiments.fidelity_sweep --list               # trials, budgets, no runs
    python -m experiments.fidelity_sweep --curve              # HM against parameters
    python -m experiments.fidelity_sweep --curve --list       # the curve's points, no runs

Every trial is the default job (`configs/fewshot.py`, the embedded task) at the sweep's base
schedule (SWEEP_BASE: 10 epochs, one learning rate) with the trial's config overrides, all
with the generalization-aware loss weights of the default AdaRing (`adaring.LOSS`)
unless the trial sets them: MMA is compared with the same loss. An AdaRing trial over the budget (10% of MMA's trainable parameters on this model,
counted by `adapters.count` as `python -m adaring_jax.params` does) is refused before any run.
Workdirs are ROOT/TRIAL/seedS; a run whose results.json exists is not redone, so the sweep
resumes. `{mma_default}` in an override is that trial's workdir at the same seed (the
TR-SVD warm start: train dense, compress, fine-tune the ring). Writes OUT.md (trials sorted by
mean HM, with mean +- std of base, novel and HM) and OUT.png. Seeds 1-3 tune; claims are
checked on other seeds.
"""

from __future__ import annotations

import json
import os

from absl import app, flags, logging

from adaring_jax import adapters, caches
from adaring_jax.adapters import adaring
from adaring_jax.models import convert
from configs import fewshot
from experiments.experiments import finished_run, mean_std, override, write_report

HERE = os.path.dirname(os.path.abspath(__file__))  # the reports go beside the script

BUDGET = 0.10  # of MMA's trainable parameters
# The schedule every trial starts from: the embedded recipe as it was when the sweep chose the
# default (it has 20 epochs and AdaRing's layer-core rate since), so trials stay what they were.
SWEEP_BASE = {"adaring": ["optim.epochs=10", "adapter.lr_layer_core=1.0"],
              "mma": ["optim.epochs=10"]}

# name -> (method, what the trial tests, overrides key=value as config fields)
RING_TRIALS = {
    "ring_default": ("adaring", "the sweep's base (banks 2+4, dense biases)", []),
    "ring_single4": ("adaring", "one bank of rank 4", ["adapter.ranks=[4]"]),
    "ring_unsplit2": ("adaring", "modes N x I x O (no splitting), rank 2",
                      ["adapter.max_mode=0", "adapter.ranks=[2]"]),
    "ring_unsplit3_sharedbias": ("adaring", "no splitting, rank 3, biases shared by layers",
                                 ["adapter.max_mode=0", "adapter.ranks=[3]",
                                  "adapter.bias=\"shared\""]),
    "ring_sharedbias_2+5": ("adaring", "biases shared by layers, banks 2+5",
                            ["adapter.bias=\"shared\"", "adapter.ranks=[2, 5]"]),
    "ring_nobias_2+5": ("adaring", "no biases, banks 2+5",
                        ["adapter.bias=\"none\"", "adapter.ranks=[2, 5]"]),
    "ring_lr_layer4": ("adaring", "layer-slice cores at 4x lr", ["adapter.lr_layer_core=4.0"]),
    "ring_lr_shared025": ("adaring", "shared cores at 0.25x lr",
                          ["adapter.lr_shared_cores=0.25"]),
    "ring_init05": ("adaring", "ring init at half MMA's std", ["adapter.init_scale=0.5"]),
    "ring_20epochs": ("adaring", "20 epochs", ["optim.epochs=20"]),
    "ring_lr3e-2_warmup": ("adaring", "lr 3e-2 with 32 warmup steps",
                           ["optim.lr=0.03", "optim.warmup_steps=32"]),
    "ring_warm_mma": ("adaring", "TR-SVD warm start from MMA (rank 4), then the full schedule",
                      ["adapter.ranks=[4]", "adapter.init_from=\"{mma_default}\""]),
    "ring_layer8_r3": ("adaring", "one bank of rank 3, layer-core bonds 8",
                       ["adapter.ranks=[3]", "adapter.layer_rank=8"]),
    "ring_ringbias": ("adaring", "biases as tensor rings (banks 2+4)", ["adapter.bias=\"ring\""]),
    "ring_crop05": ("adaring", "crops of at least half the image", ["data.crop_scale=0.5"]),
    "ring_20epochs_crop05": ("adaring", "20 epochs, layer-slice cores at 4x lr, crops of at "
                             "least half the image",
                             ["optim.epochs=20", "adapter.lr_layer_core=4.0",
                              "data.crop_scale=0.5"]),
    "ring_20epochs_lr_layer4": ("adaring", "20 epochs, layer-slice cores at 4x lr",
                                ["optim.epochs=20", "adapter.lr_layer_core=4.0"]),
    "ring_20epochs_layer8_r3": ("adaring", "20 epochs, layer-slice cores at 4x lr, one bank of "
                                "rank 3 with layer-core bonds 8",
                                ["optim.epochs=20", "adapter.lr_layer_core=4.0",
                                 "adapter.ranks=[3]", "adapter.layer_rank=8"]),
}
MMA_TRIALS = {
    "mma_default": ("mma", "MMA at the sweep's base", []),
    "mma_lr3e-3": ("mma", "lr 3e-3", ["optim.lr=0.003"]),
    "mma_lr3e-2_warmup": ("mma", "lr 3e-2 with 32 warmup steps",
                          ["optim.lr=0.03", "optim.warmup_steps=32"]),
    "mma_20epochs": ("mma", "20 epochs", ["optim.epochs=20"]),
    "mma_alpha1": ("mma", "branch scale 1", ["adapter.alpha=1.0"]),
    "mma_alpha001": ("mma", "branch scale 0.01", ["adapter.alpha=0.01"]),
    "mma_hidden16": ("mma", "bottleneck 16", ["adapter.hidden=16"]),
    "mma_loss0": ("mma", "cross-entropy only", ["loss.text_l1=0.0", "loss.image_l1=0.0",
                                                 "loss.kl=0.0"]),
    "mma_loss03": ("mma", "loss weights 0.3", ["loss.text_l1=0.3", "loss.image_l1=0.3",
                                               "loss.kl=0.3"]),
    "mma_wd": ("mma", "weight decay 1e-2", ["optim.weight_decay=0.01"]),
    "mma_crop05": ("mma", "crops of at least half the image", ["data.crop_scale=0.5"]),
    "mma_5epochs": ("mma", "5 epochs", ["optim.epochs=5"]),
    "mma_20epochs_alpha1": ("mma", "20 epochs, branch scale 1",
                            ["optim.epochs=20", "adapter.alpha=1.0"]),
    "mma_crop08": ("mma", "crops of at least 0.8 of the image", ["data.crop_scale=0.8"]),
    "mma_20epochs_crop05": ("mma", "20 epochs, crops of at least half the image",
                            ["optim.epochs=20", "data.crop_scale=0.5"]),
    "mma_20epochs_crop08": ("mma", "20 epochs, crops of at least 0.8 of the image",
                            ["optim.epochs=20", "data.crop_scale=0.8"]),
    "mma_20epochs_lr3e-2_warmup": ("mma", "20 epochs, lr 3e-2 with 32 warmup steps",
                                   ["optim.epochs=20", "optim.lr=0.03",
                                    "optim.warmup_steps=32"]),
    "mma_20epochs_alpha1_lr3e-2": ("mma", "20 epochs, branch scale 1, lr 3e-2 with 32 warmup "
                                   "steps", ["optim.epochs=20", "adapter.alpha=1.0",
                                             "optim.lr=0.03", "optim.warmup_steps=32"]),
}
# The parameter curve (`--curve`): HM against trainable parameters at the default recipe, for
# one-bank rings of growing rank and MMA with narrower bottlenecks -- what the ring buys per
# parameter, and what the budget costs. Not sweep trials: they may exceed the budget, and the
# sweep's own points (CURVE_FROM_SWEEP) are reused.
CURVE = {
    "ring_rank8": ("adaring", "one bank of rank 8", ["adapter.ranks=[8]"]),
    "ring_rank16": ("adaring", "one bank of rank 16", ["adapter.ranks=[16]"]),
    "mma_hidden3": ("mma", "bottleneck 3 (MMA within the budget)", ["adapter.hidden=3"]),
    "mma_hidden8": ("mma", "bottleneck 8", ["adapter.hidden=8"]),
}
CURVE_FROM_SWEEP = ("ring_single4", "ring_default", "mma_hidden16", "mma_default")
TRIALS = {**RING_TRIALS, **MMA_TRIALS}
EVERY = {**TRIALS, **CURVE}

_TRIALS = flags.DEFINE_list("trials", list(TRIALS), "trials to run (with --curve: which of the "
                            "curve's points; default all of them)")
_SEEDS = flags.DEFINE_list("seeds", ["1", "2", "3"], "tuning seeds")
_ROOT = flags.DEFINE_string("root", "runs/sweep", "workdirs: ROOT/TRIAL/seedS")
_OUT = flags.DEFINE_string("out", os.path.join(HERE, "sweep"), "writes OUT.md, OUT.png")
_ARGS = flags.DEFINE_string("config_args", "", "extra configs/fewshot.py arguments (smoke: "
                            "the tiny random CLIP, for tests)")
_LIST = flags.DEFINE_bool("list", False, "print the trials and their parameter counts only")
_CURVE = flags.DEFINE_bool("curve", False, "run the parameter curve instead (writes "
                           "experiments/param_curve.md and .png unless --out is given)")


def make_config(trial: str, seed: str):
    method, _, overrides = EVERY[trial]
    # The sweep measured the branch form (sites=branch, the default until 2026-12-04).
    branch = "sites=branch" if method == "adaring" else ""
    arg = ",".join(filter(None, [f"method={method},seed={seed}", branch, _ARGS.value]))
    config = fewshot.get_config(arg)
    config.unlock()
    for key, value in adaring.LOSS.items():  # every method, the same loss
        if key == "diversity":  # the banks' term, AdaRing's only
            continue
        config.loss[key] = value
    mma_dir = os.path.abspath(os.path.join(_ROOT.value, "mma_default", f"seed{seed}"))
    for item in SWEEP_BASE[method] + overrides:
        override(config, item.replace("{mma_default}", mma_dir))
    config.lock()
    return config


def trainable(config) -> int:
    arch = convert.architecture(config.model.arch, config.model.checkpoint)
    return adapters.count(adapters.spec_from_config(config, arch))


def check_budget(trials) -> dict[str, int]:
    """{trial: trainable params}; raises if an AdaRing trial exceeds the budget."""
    mma = trainable(make_config("mma_default", "1"))
    counts = {t: trainable(make_config(t, "1")) for t in trials}
    over = [f"{t} ({counts[t]:,})" for t in trials
            if TRIALS[t][0] == "adaring" and counts[t] > BUDGET * mma]
    if over:
        raise app.UsageError(f"over the budget of {BUDGET:.0%} of MMA's {mma:,}: "
                             + ", ".join(over))
    return counts


def run_trial(trial: str, seed: str) -> dict:
    if "{mma_default}" in json.dumps(EVERY[trial][2]):
        run_trial("mma_default", seed)  # the dense run the warm start compresses
    return finished_run(make_config(trial, seed),
                        os.path.abspath(os.path.join(_ROOT.value, trial, f"seed{seed}")))


def table(results: dict, counts: dict) -> list[dict]:
    rows = [{"trial": t, "method": EVERY[t][0], "what": EVERY[t][1], "params": counts[t],
             **{k: mean_std([r["adapted"][k] for r in runs]) for k in ("base", "novel", "hm")}}
            for t, runs in results.items()]
    return sorted(rows, key=lambda r: -r["hm"][0])


def markdown(rows, seeds) -> str:
    lines = [f"Seeds {', '.join(seeds)}; every trial with the generalization-aware loss "
             "weights of the default AdaRing unless it sets them. "
             "`python -m experiments.fidelity_sweep`.", "",
             "| trial | method | what it tests | trainable params | base | novel | HM |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k][0]:.2f} +- {r[k][1]:.2f}" for k in ("base", "novel", "hm")]
        lines.append(f"| {r['trial']} | {r['method']} | {r['what']} | {r['params']:,} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.2))
    ys = range(len(rows))
    colours = ["tab:blue" if r["method"] == "adaring" else "tab:orange" for r in rows]
    ax.barh(ys, [r["hm"][0] for r in rows], xerr=[r["hm"][1] for r in rows], color=colours,
            capsize=2)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([f"{r['trial']} ({r['params']:,})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("HM, mean +- std over the tuning seeds (blue: AdaRing, orange: MMA)")
    lo = min(r["hm"][0] - r["hm"][1] for r in rows)
    ax.set_xlim(max(0.0, lo - 3), None)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curve_markdown(rows, seeds, mma: int) -> str:
    lines = [f"Seeds {', '.join(seeds)}; the sweep's 10-epoch base with the "
             "generalization-aware loss weights for both methods. "
             "`python -m experiments.fidelity_sweep --curve`.", "",
             "| trial | what | trainable params | of MMA | base | novel | HM |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["method"], r["params"])):
        cells = [f"{r[k][0]:.2f} +- {r[k][1]:.2f}" for k in ("base", "novel", "hm")]
        lines.append(f"| {r['trial']} | {r['what']} | {r['params']:,} | "
                     f"{r['params'] / mma:.1%} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def curve_plot(rows, mma: int, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, colour, name in (("adaring", "tab:blue", "AdaRing rings"),
                                 ("mma", "tab:orange", "MMA, bottleneck 3 / 8 / 16 / 32")):
        pts = sorted((r["params"], r["hm"]) for r in rows if r["method"] == method)
        ax.errorbar([p for p, _ in pts], [h[0] for _, h in pts], yerr=[h[1] for _, h in pts],
                    marker="o", capsize=3, color=colour, label=name)
    ax.axvline(BUDGET * mma, color="grey", ls="--", lw=1, label=f"{BUDGET:.0%} of MMA")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("HM, mean +- std over the tuning seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_curve():
    trials = list(CURVE_FROM_SWEEP) + list(CURVE)
    if _TRIALS.present:
        unknown = sorted(set(_TRIALS.value) - set(trials))
        if unknown:
            raise app.UsageError(f"not points of the curve: {unknown}; valid: {', '.join(trials)}")
        trials = [t for t in trials if t in _TRIALS.value]
    counts = {t: trainable(make_config(t, "1"))
              for t in {*trials, "mma_default"}}
    mma = counts["mma_default"]
    if _LIST.value:  # in the report's order: AdaRing, then MMA, each by parameters
        for t in sorted(trials, key=lambda t: (EVERY[t][0], counts[t])):
            print(f"{t:<26} {EVERY[t][0]:<8} {counts[t]:>7,}  {EVERY[t][1]}")
        return
    counts = {t: counts[t] for t in trials}
    rows = table({t: [run_trial(t, s) for s in _SEEDS.value] for t in trials}, counts)
    out = _OUT.value if _OUT.present else os.path.join(HERE, "param_curve")
    write_report(out, curve_markdown(rows, _SEEDS.value, mma),
                 lambda path: curve_plot(rows, mma, path))


def main(argv):
    del argv
    caches.enable_compilation_cache()  # runs of one shape compile once, as in the commands
    logging.set_verbosity(logging.WARNING)
    if _CURVE.value:
        return run_curve()
    unknown = sorted(set(_TRIALS.value) - set(TRIALS))
    if unknown:
        raise app.UsageError(f"unknown trials {unknown}; valid: {', '.join(TRIALS)}")
    if len(RING_TRIALS) != len(MMA_TRIALS):
        raise app.UsageError("AdaRing and MMA must get the same number of trials")
    if _ARGS.value:  # another model (tests): counts only, the budget is the embedded model's
        counts = {t: trainable(make_config(t, "1")) for t in _TRIALS.value}
    else:
        counts = check_budget(_TRIALS.value)
    if _LIST.value:
        for t in _TRIALS.value:
            print(f"{t:<26} {TRIALS[t][0]:<8} {counts[t]:>7,}  {TRIALS[t][1]}")
        return
    results = {t: [run_trial(t, s) for s in _SEEDS.value] for t in _TRIALS.value}
    rows = table(results, counts)
    write_report(_OUT.value, markdown(rows, _SEEDS.value), lambda path: plot(rows, path))


if __name__ == "__main__":
    app.run(main)
