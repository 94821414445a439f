r"""Evidence on the embedded task: zero-shot, MMA, single and heterogeneous AdaRing, each with and
without the generalization-aware loss, over seeds 1-3 -> a Markdown table and a plot.

    python -m experiments.embedded_evidence                 # all variants, seeds 1-3
    python -m experiments.embedded_evidence --variants=adaring,adaring_ga --seeds=1

Every run is the default job (`configs/fewshot.py`: base-to-novel on the shapes world's target
domain with the shipped tiny CLIP) with the variant's arguments; its workdir is
ROOT/VARIANT/seedS, and a run whose results.json exists is not redone, so the script resumes.
Writes OUT.md (mean +- sample std over seeds of base, novel and HM accuracy, and trainable
parameters) and OUT.png. Runs are deterministic on a given machine, so a rerun reproduces the
table; `--set key=value` overrides config fields for exploring (e.g. loss.kl=2.0).
"""

from __future__ import annotations

import os

from absl import app, flags

from adaring_jax import caches
from adaring_jax.adapters import adaring
from configs import fewshot
from experiments.experiments import finished_run, mean_std, override, write_report

HERE = os.path.dirname(os.path.abspath(__file__))  # the report goes beside the script
# The default AdaRing's generalization-aware loss terms (its diversity term is the banks').
GENERALIZATION_LOSS = [k for k in adaring.LOSS if k != "diversity"]

# name -> (label, config argument, generalization-aware loss on?)
VARIANTS = {
    "zeroshot": ("zero-shot", "method=zeroshot", False),
    "mma": ("MMA", "method=mma", False),
    "mma_ga": ("MMA", "method=mma", True),
    # The branch form (sites=branch), whose evidence this script recorded.
    "single": ("AdaRing single (rank {r})", "ranks={r},sites=branch", False),
    "single_ga": ("AdaRing single (rank {r})", "ranks={r},sites=branch", True),
    "adaring": ("AdaRing heterogeneous (ranks {rs})", "sites=branch", False),
    "adaring_ga": ("AdaRing heterogeneous (ranks {rs})", "sites=branch", True),
}

_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS), f"of {', '.join(VARIANTS)}")
_SEEDS = flags.DEFINE_list("seeds", ["1", "2", "3"], "seeds")
_ROOT = flags.DEFINE_string("root", "runs/evidence", "workdirs: ROOT/VARIANT/seedS")
_OUT = flags.DEFINE_string("out", os.path.join(HERE, "evidence_runs"),
                           "writes OUT.md and OUT.png")
_SINGLE_RANK = flags.DEFINE_integer("single_rank", 0,
                                    "rank of the single AdaRing (0: the default's largest)")
_SET = flags.DEFINE_multi_string("set", [], "config overrides key=value (all variants)")


def make_config(variant: str, seed: str):
    _, arg, ga = VARIANTS[variant]
    default = fewshot.get_config("sites=branch")
    rank = _SINGLE_RANK.value or max(default.adapter.ranks)
    arg = ",".join(filter(None, [arg.format(r=rank), f"seed={seed}"]))
    config = fewshot.get_config(arg)
    config.unlock()
    # With the loss: the default AdaRing's weights, whatever the method's own default;
    # without: cross-entropy only (the diversity term belongs to the heterogeneous banks).
    for key in GENERALIZATION_LOSS:
        config.loss[key] = default.loss[key] if ga else 0.0
    for kv in _SET.value:
        override(config, kv)
    config.lock()
    return config


def label(variant: str) -> str:
    default = fewshot.get_config("sites=branch")
    name = VARIANTS[variant][0].format(r=_SINGLE_RANK.value or max(default.adapter.ranks),
                                       rs="+".join(map(str, default.adapter.ranks)))
    return name


def run_all(variants, seeds) -> dict:
    """{variant: [results dicts]} running what is missing."""
    return {v: [finished_run(make_config(v, s),
                             os.path.abspath(os.path.join(_ROOT.value, v, f"seed{s}")))
                for s in seeds] for v in variants}


def summarize(results: dict) -> list[dict]:
    rows = []
    for v, runs in results.items():
        row = {"variant": v, "label": label(v), "ga": VARIANTS[v][2] and v != "zeroshot",
               "params": runs[0]["trainable_params"], "seeds": len(runs)}
        for k in ("base", "novel", "hm"):
            row[k] = mean_std([r["adapted"][k] for r in runs])
        rows.append(row)
    return rows


def markdown(rows) -> str:
    lines = ["| method | generalization loss | trainable params | base | novel | HM |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k][0]:.2f} +- {r[k][1]:.2f}" for k in ("base", "novel", "hm")]
        ga = "-" if r["variant"] == "zeroshot" else ("yes" if r["ga"] else "no")
        lines.append(f"| {r['label']} | {ga} | {r['params']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 4.6))
    width = 0.26
    for i, (key, name) in enumerate((("base", "base"), ("novel", "novel"), ("hm", "HM"))):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        ax.bar(xs, [r[key][0] for r in rows], width, yerr=[r[key][1] for r in rows],
               capsize=3, label=name)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['label'].replace(' (', chr(10) + '(')}\n"
                        f"{'+ gen. loss' if r['ga'] else ''}\n{r['params']:,} params"
                        for r in rows], fontsize=7)
    ax.set_ylabel("accuracy (%), mean +- std over seeds")
    ax.set_title("Embedded task: base-to-novel on the shapes target domain")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    caches.enable_compilation_cache()  # runs of one shape compile once, as in the commands
    unknown = sorted(set(_VARIANTS.value) - set(VARIANTS))
    if unknown:
        raise app.UsageError(f"unknown variants {unknown}; valid: {', '.join(VARIANTS)}")
    rows = summarize(run_all(_VARIANTS.value, _SEEDS.value))
    write_report(_OUT.value, markdown(rows), lambda path: plot(rows, path))


if __name__ == "__main__":
    app.run(main)
