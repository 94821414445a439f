"""The one training loop, shared by adaptation (`train.py`) and pretraining (`pretrain.py`).

`run` takes a jitted `step(state, batch) -> (state, metrics)` and a `batches(start, stop)`
iterator and owns everything around it: resuming from the newest checkpoint into the abstract
state, the log and checkpoint cadence, step timing, one progress line with rate and ETA, a
SIGTERM save agreed across processes, and the non-finite guard: when the loss or the gradient
norm of a step is not finite, the run stops with `DivergedError` naming the step and metric,
and no later state is saved, so the last checkpoint on disk is the last finite one.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from adaring_jax.job import checkpoint, metrics
from adaring_jax.errors import UserError

GUARDED = ("loss", "grad_norm")  # metrics that must stay finite


class DivergedError(UserError, FloatingPointError):
    """Training produced a non-finite loss or gradient norm."""


@dataclasses.dataclass
class Outcome:
    state: object  # the final state (None when preempted)
    info: dict  # steps, resumed_from, first_step_seconds, train_seconds, preempted_at


def resume(ckpt: checkpoint.Checkpointer, state, total: int) -> tuple[object, int]:
    """(state, start step): the newest checkpoint restored into `state`'s structure, dtypes
    and shardings, or `state` itself at step 0 when there is none."""
    start = ckpt.latest_step()
    if start is None:
        return state, 0
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                            state)
    state = ckpt.restore(abstract, start)
    metrics.note(f"resumed from step {start} of {total} ({ckpt.directory})")
    return state, start


@jax.jit
def _first_bad(first, step, m):
    """The first step whose guarded metrics were not all finite (-1: none yet), per metric."""
    bad = jnp.stack([~jnp.isfinite(m[k]) for k in GUARDED])
    return jnp.where((first < 0) & bad, step, first)


def _any_process(flag: bool) -> bool:
    """A flag raised on any process (all must agree before a collective save)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))


def run(step_fn: Callable, state, batches: Callable[[int, int], Iterable], total: int,
        ckpt: checkpoint.Checkpointer, writer: metrics.MetricWriter, *, log_every: int,
        checkpoint_every: int, images_per_step: int = 0) -> Outcome:
    """Train from the newest checkpoint (if any) to `total` steps."""
    state, start = resume(ckpt, state, total)
    writer.truncate_after(start)  # a resumed run rewrites the steps after its checkpoint
    first_bad = jnp.full((len(GUARDED),), -1, jnp.int32)
    progress = metrics.Progress(total, start)
    terminated = checkpoint.install_sigterm_flag()
    info = {"steps": total, "resumed_from": start}
    t_start = time.monotonic()
    last_t, last_step = t_start, start

    def check_finite(done: int) -> None:
        bad = np.asarray(jax.device_get(first_bad))
        if (bad >= 0).any():
            i = int(np.argmin(np.where(bad >= 0, bad, np.iinfo(np.int32).max)))
            good = [s for s in ckpt.all_steps() if s < bad[i] + 1]
            last = f"step {good[-1]}" if good else "none: no checkpoint came before it"
            raise DivergedError(
                f"training diverged: {GUARDED[i]} is not finite at step {int(bad[i]) + 1} "
                f"(checked at step {done}); nothing after it was saved (last finite checkpoint: "
                f"{last}; in {ckpt.directory}) and no results are written. Lower optim.lr or "
                "add optim.warmup_steps, and run in a new workdir")

    if total == 0 and start == 0:  # nothing to train (a warm start evaluated as it is)
        ckpt.save(0, state)
    for step, batch in zip(range(start, total), batches(start, total)):
        state, m = step_fn(state, batch)
        first_bad = _first_bad(first_bad, step, {k: m[k] for k in GUARDED})
        done = step + 1
        if step == start:  # the first step compiles: time it apart from the steady steps
            jax.block_until_ready(m)
            last_t, last_step = time.monotonic(), done
            info["first_step_seconds"] = round(last_t - t_start, 2)
        if done % log_every == 0 or done == total:
            check_finite(done)
            m = jax.device_get(m)
            now = time.monotonic()
            if done > last_step:
                m["step_time"] = (now - last_t) / (done - last_step)
                if images_per_step:
                    m["images_per_second"] = images_per_step / m["step_time"]
            last_t, last_step = now, done
            writer.write(done, m)
            progress(done, m)
        if _any_process(terminated()):
            check_finite(done)
            ckpt.save(done, state, force=True)
            ckpt.wait()
            metrics.note(f"SIGTERM: saved a checkpoint at step {done} in {ckpt.directory}; "
                         "run the same command to resume")
            return Outcome(None, {**info, "preempted_at": done})
        if done % checkpoint_every == 0 or done == total:
            check_finite(done)
            ckpt.save(done, state)
    ckpt.wait()
    progress.finish()
    info["train_seconds"] = round(time.monotonic() - t_start, 2)
    return Outcome(state, info)
