r"""Compress a trained MMA run into an AdaRing run by TR-SVD of its adapter stacks.

    python -m adaring_jax.compress --workdir=runs/mma --out=runs/mma_r4 --max_rank=4
    python -m adaring_jax.compress --workdir=runs/mma --out=runs/mma_e30 --rel_error=0.3 \
        [--finetune_steps=100]

Each kernel family of the MMA bank (per tower Down and Up, and the Shared projection),
stacked over the adapted layers to (N, I, O) and split into the run's modes, is decomposed by
TR-SVD (Zhao et al. 2016) with every ring rank capped at R and zero-padded to R, so the result
is a plain one-bank AdaRing of rank R (`ranks=R`); biases are kept. `--max_rank` gives R;
`--rel_error` takes the smallest R at which every family's relative Frobenius error is at
most that. Prints per family the ranks found, the parameters kept and the error, then runs
the job on OUT: a workdir like any other adaring run's (evaluated, checkpointed; `predict`,
`export` and `adapter.init_from` accept it), trained for `--finetune_steps` steps first (0:
evaluated as compressed). The recorded config says where the start came from
(`adapter.init_from`).
"""

from __future__ import annotations

import math
import os
import sys

import ml_collections
from absl import app, flags

from adaring_jax import adapters, cli
from adaring_jax.adapters import adaring, base
from adaring_jax.job import runs, train, workdir as workdirs
from adaring_jax.errors import UserError
from adaring_jax.models import convert

MAX_SEARCHED_RANK = 64


class CompressError(UserError, ValueError):
    """Options compress cannot act on."""


def ring_config(mma_config, rank: int, source: str, finetune_steps: int):
    """The adaring experiment that starts from `source`'s MMA adapters compressed to `rank`."""
    config = mma_config.copy_and_resolve_references()
    config.unlock()
    config.method = adaring.METHOD.name
    block = {**adaring.config_block(), "ranks": (rank,), "sites": "branch"}
    for key in base.bottleneck_block():  # the MMA run's placement and branch
        block[key] = mma_config.adapter[key]
    block["init_from"] = os.path.abspath(source)
    config.adapter = ml_collections.ConfigDict(block)
    config.optim.steps = finetune_steps
    if not finetune_steps:
        config.optim.epochs = 0  # evaluate the compressed adapters as they are
    config.lock()
    return config


def compress_report(mma_params, mma_config, model_config, rank: int) -> dict:
    """{family: (ranks found, params kept, relative error)} of compressing to `rank`."""
    spec = adapters.spec_from_config(ring_config(mma_config, rank, ".", 0), model_config)
    params, errors, found = adaring.from_dense(mma_params, spec, rel_eps=None, max_rank=rank)
    bank = params["bank_0"]
    kept = {}
    for name in errors:
        node = bank["shared"] if name == "shared" else bank[name.split("/")[0]][name.split("/")[1]]
        kept[name] = sum(math.prod(c.shape) for c in node["cores"])
    return {name: (found[name], kept[name], errors[name]) for name in errors}


def choose_rank(mma_params, mma_config, model_config, rel_error: float) -> int:
    """The smallest uniform rank whose every family meets `rel_error`."""
    for rank in range(1, MAX_SEARCHED_RANK + 1):
        report = compress_report(mma_params, mma_config, model_config, rank)
        if max(e for _, _, e in report.values()) <= rel_error:
            return rank
    raise CompressError(f"no ring rank up to {MAX_SEARCHED_RANK} reaches --rel_error="
                        f"{rel_error}; give a larger error or --max_rank")


def print_report(report: dict, rank: int, mma_count: int, ring_count: int) -> None:
    lines = [f"TR-SVD to rank {rank}:", f"  {'family':<12} {'ranks found':<24} "
             f"{'core params':>11} {'rel. error':>10}"]
    for name, (found, kept, err) in report.items():
        lines.append(f"  {name:<12} {str(list(found)):<24} {kept:>11,} {err:>10.4f}")
    lines.append(f"  trainable params: {ring_count:,} of MMA's {mma_count:,} "
                 f"({100 * ring_count / mma_count:.1f}%; biases kept dense)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _define_flags():
    flags.DEFINE_string("workdir", None, "A finished mma run.", required=True)
    flags.DEFINE_string("out", None, "The new adaring run's workdir (not inside another run's).",
                        required=True)
    flags.DEFINE_float("rel_error", None, "Largest relative error per family; picks the rank.")
    flags.DEFINE_integer("max_rank", None, "Ring rank R of every bond (>= 1).")
    flags.DEFINE_integer("finetune_steps", 0, "Train the ring this many steps after "
                         "compressing (0: evaluate it as compressed).")


def main(argv):
    f = flags.FLAGS

    def body():
        if len(argv) > 1:
            raise CompressError(f"unexpected arguments: {argv[1:]}")
        if (f.rel_error is None) == (f.max_rank is None):
            raise CompressError("give exactly one of --rel_error and --max_rank")
        cli.at_least("max_rank", f.max_rank, 1)
        cli.at_least("finetune_steps", f.finetune_steps, 0)
        if f.rel_error is not None and not 0 < f.rel_error < 1:
            raise CompressError(f"--rel_error={f.rel_error}: give a number in (0, 1)")
        workdirs.check_place(f.out, "--out")  # before any work: not inside a run, not a file
        if os.path.realpath(f.out) == os.path.realpath(f.workdir):
            raise CompressError(f"--out={f.out} is the mma run itself; the ring is another "
                                "experiment: give a new workdir")
        rec = runs.read(f.workdir)
        if rec.method != "mma":
            raise runs.RunError(f"{f.workdir} is a {rec.method} run; compress takes a finished "
                                "mma run")
        model_config = convert.architecture(rec.config.model.arch, rec.config.model.checkpoint)
        mma_spec = adapters.spec_from_config(rec.config, model_config)
        mma_params = runs.restore_adapters(rec, mma_spec)
        rank = f.max_rank or choose_rank(mma_params, rec.config, model_config, f.rel_error)
        config = ring_config(rec.config, rank, f.workdir, f.finetune_steps)
        ring_count = adapters.count(adapters.spec_from_config(config, model_config))
        print_report(compress_report(mma_params, rec.config, model_config, rank), rank,
                     adapters.count(mma_spec), ring_count)
        results = train.train_and_evaluate(config, f.out)
        mma_hm = rec.results.get("adapted", {}).get("hm")
        ring_hm = results.get("adapted", {}).get("hm")
        if mma_hm is not None and ring_hm is not None:
            print(f"HM {ring_hm:.2f} with {ring_count:,} params vs the MMA run's {mma_hm:.2f} "
                  f"with {adapters.count(mma_spec):,}", file=sys.stderr)

    return cli.run(body)


if __name__ == "__main__":
    _define_flags()
    app.run(main, flags_parser=cli.parse_flags)
