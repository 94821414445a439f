"""Checkpoints of the small training state with Orbax, guarded against silent mix-ups.

What is saved: only the trainer's state pytree, `{"adapters", "opt_state", "step", "rng"}`
(kilobytes to megabytes), never the frozen backbone, which is rebuilt from its own weights.

Why the guards: a resumed job must continue the same experiment. The workdir records the
run's identity (`experiment.json`, `workdir.py`) and refuses another, and a checkpoint that
cannot be read back faithfully raises `CheckpointError`: the trainer never quietly starts afresh.

Orbax behaviour this relies on (orbax-checkpoint 0.12):
- A step is written to `<dir>/<step>.orbax-checkpoint-tmp...` and renamed to `<dir>/<step>` once
  complete (on GCS a `commit_success.txt` marks completion instead), so a step cut short by a
  crash is never listed by `latest_step`; `cleanup_tmp_directories` removes such leftovers.
- Saves are asynchronous: `save` returns once the arrays are copied to host memory (so the
  trainer may donate/overwrite its buffers), the files are written in a background thread.
- Namedtuples (optax states) are stored as lists/dicts; restoring into a template of the same
  structure gives back the namedtuples. Orbax checks the tree structure and shapes but casts
  dtypes silently, so shapes and dtypes are compared with the checkpoint's metadata here.
- Every JAX process calls every method; Orbax coordinates the writes of a multi-process job.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import threading
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from adaring_jax.errors import Stopped, UserError

class CheckpointError(UserError, RuntimeError):
    """An incompatible or unreadable checkpoint; the message says what, where and what to do."""


class Checkpointer:
    """Saves and restores the training state under `directory`, one subdirectory per step."""

    def __init__(self, directory: str, max_to_keep: int = 3):
        """Orbax CheckpointManager in `directory` (created if missing), keeping the last
        `max_to_keep` steps. The caller guards the directory: the jobs bind their whole
        workdir to one experiment (`workdir.py`)."""
        directory = os.fspath(directory)
        if "://" not in directory:  # Orbax wants absolute local paths
            directory = os.path.abspath(directory)
        self.directory = epath.Path(directory)
        self._mgr = ocp.CheckpointManager(
            self.directory,
            # Registering the handler up front lets `item_metadata` work before any save/restore.
            item_handlers=ocp.StandardCheckpointHandler(),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
                enable_async_checkpointing=True))

    def latest_step(self) -> int | None:
        """The newest complete step on disk (or being saved by this process), None if none."""
        return self._mgr.latest_step()

    def all_steps(self) -> list[int]:
        """All complete steps, oldest first."""
        return list(self._mgr.all_steps())

    def save(self, step: int, state: Any, force: bool = False) -> None:
        """Start saving `state` as `step` (asynchronously; see `wait`). A step that is already
        saved is left as it is (e.g. the final save after a periodic save at the same step).
        `force` saves even if `step` is not newer than the latest step."""
        if step in self._mgr.all_steps():
            return
        self._check_space(state)
        with _ctrl_c_deferred():
            self._mgr.save(step, args=ocp.args.StandardSave(state), force=force)

    def _check_space(self, state: Any) -> None:
        """Refuse to start a save the disk cannot hold. Orbax cut short by a full disk leaves
        screenfuls of TensorStore tracebacks from its writer threads; checked here, a full disk
        is one line and the last complete step stays the one to resume from. (The room asked
        for: twice the state, for Orbax's metadata and a step being replaced, plus 1 MiB.)"""
        if "://" in str(self.directory):
            return  # object stores have no free space to ask for
        need = 2 * sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(state)) + 2**20
        free = shutil.disk_usage(self.directory).free
        if free < need:
            raise OSError(errno.ENOSPC, f"No space left on device: {free:,} bytes free, a "
                          f"checkpoint needs {need:,}", str(self.directory))

    def restore(self, abstract_state: Any, step: int | None = None) -> Any:
        """Restore `step` (default: latest) into the structure, dtypes and shardings of
        `abstract_state` (jax.ShapeDtypeStruct leaves with `.sharding`, or concrete arrays used
        as a template). Any failure, from a missing step to truncated files or a template that
        does not match, raises CheckpointError; a fresh state is never returned."""
        self._mgr.wait_until_finished()  # a step still being written is not readable yet
        steps = self.all_steps()
        step = steps[-1] if step is None and steps else step
        where = f"{self.directory}/{step}"
        if step not in steps:
            raise CheckpointError(f"no checkpoint {'' if step is None else f'for step {step} '}"
                                  f"in {self.directory} (steps present: {steps}).")
        try:
            self._check_leaves(step, abstract_state)
            return self._mgr.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except Exception as e:  # noqa: BLE001 - Orbax/TensorStore raise many types
            # TensorStore appends its whole JSON spec: a screenful that says nothing more.
            detail = re.sub(r"\s*(\[tensorstore_spec=|See full TensorStore details:).*", "",
                            f"{type(e).__name__}: {e}", flags=re.S)
            raise CheckpointError(
                f"cannot restore checkpoint step {step} from {where}: "
                f"{detail[:2000]}{' [...]' if len(detail) > 2000 else ''}\n"
                "The checkpoint is unreadable or does not match this run's state. To start "
                f"afresh, move {self.directory} away; to resume from an earlier step "
                f"({[s for s in steps if s < step] or 'none'}), delete {where}.") from e

    def restore_as_saved(self, step: int | None = None) -> Any:
        """Step `step` (default: latest) in the structure it was saved with (optax states as
        dicts and lists), on one device: for reading a finished run, which has no template."""
        self._mgr.wait_until_finished()
        steps = self.all_steps()
        step = steps[-1] if step is None and steps else step
        if step not in steps:
            raise CheckpointError(f"no checkpoint in {self.directory} (steps present: {steps}); "
                                  "the run was never saved, or its checkpoints were deleted")
        try:
            meta = self._mgr.item_metadata(step)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"cannot read checkpoint step {step} in {self.directory}: "
                                  f"{type(e).__name__}: {e}") from e
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device),
            getattr(meta, "tree", meta), is_leaf=lambda m: hasattr(m, "shape"))
        return self.restore(abstract, step)

    def _check_leaves(self, step: int, abstract_state: Any) -> None:
        """Compare shapes and dtypes with the checkpoint's metadata before reading any data:
        Orbax would silently cast dtypes, and a shape error in the middle of its parallel reads
        leaves a screenful of "coroutine was never awaited" tracebacks behind."""
        meta = self._mgr.item_metadata(step)
        saved = ocp.tree.to_flat_dict(getattr(meta, "tree", meta))
        sig = lambda x: f"{np.dtype(x.dtype)}{list(x.shape)}"  # noqa: E731 - "float32[3, 4]"
        wrong = []
        for key, leaf in ocp.tree.to_flat_dict(abstract_state).items():
            have = saved.get(key)
            if not all(hasattr(x, "shape") and hasattr(x, "dtype") for x in (have, leaf)):
                continue  # missing/extra leaves: Orbax's tree check reports them
            if sig(have) != sig(leaf):
                wrong.append(f"{'/'.join(key)}: saved {sig(have)}, template {sig(leaf)}")
        if wrong:
            raise ValueError("shapes/dtypes differ from the checkpoint: " + "; ".join(wrong))

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk (raises their errors, if any)."""
        self._mgr.wait_until_finished()

    def close(self) -> None:
        """Wait for pending saves and release Orbax's background resources."""
        self._mgr.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def _ctrl_c_deferred():
    """Hold a Ctrl-C that arrives while Orbax starts a save until the save is started.

    Interrupted halfway, Orbax leaves a background writer that `close` does not wait for; at
    exit it dies with a thread traceback (the checkpoint itself is fine). Held, the interrupt
    is raised right after, and `close` then waits for the complete save. Main thread only.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending and callable(previous):
        previous(signal.SIGINT, None)  # Python's handler: raises KeyboardInterrupt here
    elif pending and previous == signal.SIG_DFL:
        os.kill(os.getpid(), signal.SIGINT)


def install_sigterm_flag() -> Callable[[], bool]:
    """Make SIGTERM (preemption, `scancel`, `kill`) request a clean stop instead of killing.

    Returns a function telling whether SIGTERM has arrived; the trainer checks it every step,
    saves a checkpoint and exits. The handler can only be installed from the main thread;
    elsewhere nothing is installed and the flag stays False. In a multi-process job the
    processes may see the signal at different steps, so combine the flags across processes
    (e.g. `jax.experimental.multihost_utils.process_allgather(flag).any()`) before acting.
    """
    requested = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: requested.set())
    return requested.is_set


def sigterm_raises(message: str) -> None:
    """From now on SIGTERM raises `errors.Stopped(message)` (main thread only): for work after
    the training loop, which a rerun redoes from the last checkpoint."""
    def stop(signum, frame):
        raise Stopped(message)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
