"""A run's results: `results.json` (written last: a run with it is finished) and, for
adaptation, `results.md`, the table the run prints."""

from __future__ import annotations

import json
import os

from adaring_jax import atomic

from adaring_jax.job import metrics, workdir as workdirs


def table(results: dict) -> list[str]:
    """The markdown table of an adaptation run's zero-shot and adapted accuracies."""
    splits = list(results["zeroshot"])
    lines = [f"| model | {' | '.join(splits)} | trainable params |",
             "|---" * (len(splits) + 2) + "|"]
    for kind in ("zeroshot", "adapted"):
        n = 0 if kind == "zeroshot" else results["trainable_params"]
        lines.append(f"| {kind} | " + " | ".join(f"{results[kind][s]:.2f}" for s in splits)
                     + f" | {n:,} |")
    return lines


def write(workdir: str, results: dict) -> None:
    """results.md, then results.json (each whole or not at all); prints the table."""
    lines = table(results)
    atomic.write_text(os.path.join(workdir, "results.md"),
                      f"{results['method']} on {results['dataset']} ({results['protocol']}, "
                      f"{results['shots']} shots, seed {results['seed']})\n\n"
                      + "\n".join(lines) + "\n")
    atomic.write_json(os.path.join(workdir, workdirs.RESULTS), results)
    print("\n".join(lines), flush=True)


def finished(workdir: str) -> dict:
    """The results of the finished run in `workdir`, reported again; nothing is written."""
    path = os.path.join(workdir, workdirs.RESULTS)
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        raise workdirs.WorkdirError(f"{path} is unreadable ({e}); move {workdir} away and run "
                                    "again") from None
    metrics.note(f"{workdir} holds this experiment, finished; its results:")
    try:
        print("\n".join(table(results)), flush=True)
    except (KeyError, TypeError, AttributeError):  # pretraining: no table
        print(json.dumps(results.get("zeroshot", results)), flush=True)
    return results
