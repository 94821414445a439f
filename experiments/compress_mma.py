r"""The compression experiment on the embedded task: train MMA, TR-SVD its adapter stacks into
one-bank AdaRing rings of rank R (`python -m adaring_jax.compress`), and measure the accuracy
kept against the parameters kept, as compressed and after a short fine-tune of the ring.

    python -m experiments.compress_mma                       # ranks 1,2,4,8,16, seeds 1-3
    python -m experiments.compress_mma --ranks=2,4 --seeds=1 --finetune_steps=64

Every MMA run is the default job with `method=mma` (ROOT/mma/seedS); every compressed run is
what `compress` makes (ROOT/rank{R}_ft{N}/seedS, with `adapter.init_from` pointing at the MMA
run). A run whose results.json exists is not redone, so the script resumes. Writes OUT.md:
per rank, trainable parameters (share of MMA's), the mean relative error of the five kernel
families, and HM as compressed and after N fine-tuning steps (mean +- std over seeds), next to
MMA's own HM.
"""

from __future__ import annotations

import os
import statistics

from absl import app, flags, logging

import numpy as np

from adaring_jax import adapters, caches, compress
from adaring_jax.adapters import adaring, tensor_ring as tr
from adaring_jax.job import runs
from adaring_jax.models import convert
from configs import fewshot
from experiments.experiments import finished_run, mean_std, write_report

HERE = os.path.dirname(os.path.abspath(__file__))  # the report goes beside the script

EPOCHS = 10  # the MMA runs' schedule: the embedded recipe's when this experiment was made

_RANKS = flags.DEFINE_list("ranks", ["1", "2", "4", "8", "16"], "ring ranks R")
_SEEDS = flags.DEFINE_list("seeds", ["1", "2", "3"], "seeds")
_FINETUNE = flags.DEFINE_integer("finetune_steps", 64, "fine-tuning steps after compressing")
_ROOT = flags.DEFINE_string("root", "runs/compression", "workdirs")
_OUT = flags.DEFINE_string("out", os.path.join(HERE, "compression"), "writes OUT.md")
_ARGS = flags.DEFINE_string("config_args", "", "extra configs/fewshot.py arguments (smoke: the "
                            "tiny random CLIP, for tests)")


def _stats(xs) -> str:
    mean, std = mean_std(xs)
    return f"{mean:.2f} +- {std:.2f}" if len(xs) > 1 else f"{mean:.2f}"


def compressibility(trained, init, spec, rank: int) -> dict[str, float]:
    """Mean relative TR-SVD error at `rank` over the kernel families, of the trained stacks
    ("W") and of their updates from MMA's random init ("dW"), with I and O split into the
    ring's modes ("split") or not (N x I x O, "unsplit")."""
    out: dict[str, list[float]] = {}
    for (owner, fam), (i, o) in spec.families().items():
        get = lambda p: np.asarray(p[fam]["kernel"] if owner == "shared"  # noqa: E731
                                   else p[owner][fam]["kernel"], np.float64)
        for name, x in (("W", get(trained)), ("dW", get(trained) - get(init))):
            ring = (spec.num_layers, *tr.factorize(i, adaring.Spec.max_mode),
                    *tr.factorize(o, adaring.Spec.max_mode))  # the ring's default modes
            for split, modes in (("split", ring), ("unsplit", x.shape)):
                cores = tr.tr_svd(x.reshape(modes), ranks=(rank,) * len(modes))
                key = f"{name} {split}"
                out.setdefault(key, []).append(tr.relative_error(cores, x.reshape(modes)))
                out.setdefault(f"params {split}", []).append(tr.tr_num_params(cores))
    return {k: (float(np.sum(v)) if k.startswith("params") else float(np.mean(v)))
            for k, v in out.items()}


def layer_sharing(trained, init, spec, seed: int) -> dict[str, float]:
    """Cross-layer redundancy, the ring's premise: the share of a stack's energy in the top
    singular value of its layer unfolding (N x I*O), averaged over the kernel families, for
    the trained weights W, their update dW, and Gaussian noise of the same shape (layers
    unrelated: about 1/N plus sampling noise). 1.0 means every layer holds the same matrix up
    to scale."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {}
    for (owner, fam), _ in spec.families().items():
        get = lambda p: np.asarray(p[fam]["kernel"] if owner == "shared"  # noqa: E731
                                   else p[owner][fam]["kernel"], np.float64)
        w, w0 = get(trained), get(init)
        for name, x in (("W", w), ("dW", w - w0), ("noise", rng.standard_normal(w.shape))):
            sv = np.linalg.svd(x.reshape(x.shape[0], -1), compute_uv=False)
            out.setdefault(name, []).append(float(sv[0] ** 2 / np.sum(sv ** 2)))
    return {k: float(np.mean(v)) for k, v in out.items()}


def main(argv):
    del argv
    caches.enable_compilation_cache()  # runs of one shape compile once, as in the commands
    logging.set_verbosity(logging.WARNING)
    ranks = [int(r) for r in _RANKS.value]
    steps = _FINETUNE.value
    rows = {r: {"params": 0, "error": [], "hm0": [], "hm": [], "why": []} for r in ranks}
    mma_hm, mma_params, sharing = [], 0, []
    for seed in _SEEDS.value:
        mma_dir = os.path.join(_ROOT.value, "mma", f"seed{seed}")
        arg = ",".join(filter(None, [f"method=mma,seed={seed}", _ARGS.value]))
        config = fewshot.get_config(arg)
        config.unlock()
        config.optim.epochs = EPOCHS
        mma = finished_run(config, mma_dir)
        mma_hm.append(mma["adapted"]["hm"])
        mma_params = mma["trainable_params"]
        rec = runs.read(mma_dir)
        model_config = convert.architecture(rec.config.model.arch, rec.config.model.checkpoint)
        mma_spec = adapters.spec_from_config(rec.config, model_config)
        mma_weights = runs.restore_adapters(rec, mma_spec)
        mma_init = adapters.init(mma_spec, rec.config.seed)  # what training started from
        sharing.append(layer_sharing(mma_weights, mma_init, mma_spec, rec.config.seed))
        for r in ranks:
            rows[r]["why"].append(compressibility(mma_weights, mma_init, mma_spec, r))
            report = compress.compress_report(mma_weights, rec.config, model_config, r)
            rows[r]["error"].append(statistics.mean(e for _, _, e in report.values()))
            for n, key in ((0, "hm0"), (steps, "hm")):
                out = finished_run(compress.ring_config(rec.config, r, mma_dir, n),
                           os.path.join(_ROOT.value, f"rank{r}_ft{n}", f"seed{seed}"))
                rows[r][key].append(out["adapted"]["hm"])
                rows[r]["params"] = out["trainable_params"]
    lines = [f"MMA (embedded default, `method=mma`) compressed by TR-SVD into one-bank AdaRing "
             f"rings; seeds {', '.join(_SEEDS.value)}; `python -m experiments.compress_mma`.",
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
    keys = ["W split", "W unsplit", "dW split", "dW unsplit"]
    lines += ["", "How compressible the trained stacks are: mean relative TR-SVD error over the "
              "five kernel families and the seeds, of the trained weights W and of their update "
              "dW = W - W_init from MMA's random init; 'split' tensorizes I and O into the "
              "ring's modes, 'unsplit' keeps N x I x O. Core parameters summed over families.",
              "", "| ring rank | " + " | ".join(keys) + " | core params split | unsplit |",
              "|---" * (len(keys) + 3) + "|"]
    for r in ranks:
        why = {k: statistics.mean(w[k] for w in rows[r]["why"]) for k in rows[r]["why"][0]}
        lines.append(f"| {r} | " + " | ".join(f"{why[k]:.3f}" for k in keys)
                     + f" | {why['params split']:,.0f} | {why['params unsplit']:,.0f} |")
    n = mma_spec.num_layers
    lines += ["", f"Shared across the {n} adapted layers? Share of each stack's energy in the top "
              f"singular value of its layer unfolding ({n} x I*O), mean over families and seeds "
              f"(1.0: one matrix for every layer; unrelated layers: about 1/{n} = {1 / n:.2f}).",
              "", "| W | dW = W - W_init | Gaussian noise, same shape |", "|---|---|---|",
              "| " + " | ".join(f"{statistics.mean(s[k] for s in sharing):.3f}"
                                for k in ("W", "dW", "noise")) + " |"]
    write_report(_OUT.value, "\n".join(lines) + "\n")


if __name__ == "__main__":
    app.run(main)
