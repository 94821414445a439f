"""What a run reports: TensorBoard event files and metrics.jsonl, and the console.

clu's metric writers import TensorFlow for their TensorBoard backend; we do not install
TensorFlow (1.4 GB) for that, so TensorBoard events are written with tensorboardX (the same
event format) and every record also goes to `metrics.jsonl` for scripts. Only process 0 writes.

The console gets one progress line per log step (step, loss, accuracy, rate, ETA; rewritten in
place on a terminal) and short notes on stderr; results go to stdout. absl and Orbax INFO
logging is off unless `--verbosity=0` is passed to `main`.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax

from adaring_jax import atomic


def note(message: str) -> None:
    """A line for the user on stderr (process 0 only)."""
    if jax.process_index() == 0:
        Progress.clear()
        print(message, file=sys.stderr, flush=True)


class MetricWriter:
    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        self._tb = None
        self.path = os.path.join(workdir, "metrics.jsonl")
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            self._jsonl = open(self.path, "a")

    def truncate_after(self, step: int) -> None:
        """Drop records after `step` (a resumed run writes those steps again), and a line cut
        short by a kill."""
        if not self.enabled or not os.path.getsize(self.path):
            return
        self._jsonl.close()

        def kept(line: str) -> bool:
            try:
                return json.loads(line)["step"] <= step
            except (ValueError, KeyError, TypeError):
                return False

        with open(self.path) as f:
            keep = [line if line.endswith("\n") else line + "\n" for line in f if kept(line)]
        atomic.write_text(self.path, "".join(keep))
        self._jsonl = open(self.path, "a")

    def write(self, step: int, scalars: dict[str, float]):
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        for k, v in scalars.items():
            self._tb.add_scalar(k, v, step)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()

    def close(self):
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


class Progress:
    """One progress line: step, loss and accuracy when reported, steps/s, images/s, ETA."""

    _open_line = False  # a line rewritten in place is on the terminal

    def __init__(self, total: int, start: int):
        self.total, self.start = total, start
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()

    @classmethod
    def clear(cls) -> None:
        if cls._open_line:
            print(file=sys.stderr)
            cls._open_line = False

    def __call__(self, step: int, m: dict | None = None) -> str | None:
        if jax.process_index() != 0:
            return None
        done = step - self.start
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        eta = elapsed / max(done, 1) * (self.total - step)
        m = m or {}
        fields = [f"step {step}/{self.total} ({100 * step / self.total:.0f}%)"]
        fields += [f"{k} {float(m[k]):.4g}" for k in ("loss", "accuracy") if k in m]
        fields.append(f"{done / elapsed:.2f} steps/s")
        if "images_per_second" in m:
            fields.append(f"{float(m['images_per_second']):.0f} img/s")
        fields.append(f"ETA {eta:.0f}s")
        line = ", ".join(fields)
        if self.tty:
            print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)
            Progress._open_line = True
        else:
            print(line, file=sys.stderr, flush=True)
        return line

    def finish(self) -> None:
        if jax.process_index() == 0:
            Progress.clear()
