"""What the experiment scripts (embedded_evidence.py, fidelity_sweep.py, compress_mma.py)
share: run a config in its workdir unless it finished, set a config field from `key=json`,
mean and std over seeds, and write the report."""

from __future__ import annotations

import json
import os
import statistics

from absl import logging

from adaring_jax.job import train


def finished_run(config, workdir: str) -> dict:
    """The results of `config` in `workdir`, running it first unless results.json exists
    (so the scripts resume where they stopped)."""
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        logging.info("running %s", workdir)
        train.train_and_evaluate(config, workdir)
    with open(path) as f:
        return json.load(f)


def override(config, item: str) -> None:
    """Set `key.path=value` (value in JSON) on an unlocked config, in the field's own type."""
    key, _, value = item.partition("=")
    *path, last = key.split(".")
    node = config
    for p in path:
        node = node[p]
    value = json.loads(value)
    node[last] = tuple(value) if isinstance(node[last], tuple) else type(node[last])(value)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample std (0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def write_report(out: str, markdown: str, plot=None) -> None:
    """OUT.md (and OUT.png through `plot(path)`), then the table on stdout."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".md", "w") as f:
        f.write(markdown)
    written = f"{out}.md"
    if plot is not None:
        plot(out + ".png")
        written += f" and {out}.png"
    print(markdown + f"\nwritten to {written}")
