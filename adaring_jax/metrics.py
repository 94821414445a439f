"""Metric writing: console (absl logging), TensorBoard event files, and metrics.jsonl.

clu's metric writers import TensorFlow for their TensorBoard backend; we do not install
TensorFlow (1.4 GB) for that, so TensorBoard events are written with tensorboardX (the same
event format) and every record also goes to `metrics.jsonl` for scripts. Only process 0 writes.
"""

from __future__ import annotations

import json
import os
import time

import jax
from absl import logging


class MetricWriter:
    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        self._tb = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

    def write(self, step: int, scalars: dict[str, float]):
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        for k, v in scalars.items():
            self._tb.add_scalar(k, v, step)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()
        logging.info("[%d] %s", step, ", ".join(f"{k}={v:.4g}" for k, v in scalars.items()))

    def close(self):
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


class Progress:
    """A progress line with rate and ETA every `every` steps."""

    def __init__(self, total: int, start: int, every: int):
        self.total, self.start, self.every = total, start, max(1, every)
        self.t0 = time.monotonic()

    def __call__(self, step: int, extra: str = "") -> str | None:
        done = step - self.start
        if done <= 0 or (step % self.every and step != self.total):
            return None
        elapsed = time.monotonic() - self.t0
        eta = elapsed / done * (self.total - step)
        line = (f"step {step}/{self.total} ({100 * step / self.total:.0f}%), "
                f"{done / elapsed:.2f} steps/s, ETA {eta:.0f}s {extra}")
        logging.info(line)
        return line
