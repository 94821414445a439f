"""The run directory: checked before anything is written, held by one run at a time, and bound
to one experiment.

A job first `check`s the directory (writable, not another experiment's) without writing
anything; only after every input is known good does it `acquire` it: create it, take an
exclusive lock (a second run on the same directory is refused with the holder's pid, host and
start time) and record the run's identity (the whole config less a short deny-list,
`identity.py`) in `experiment.json`. A finished, interrupted or running workdir of another
identity is refused, naming each differing field, before anything is written.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time

import jax
from absl import logging

from adaring_jax import atomic

from adaring_jax.job import identity, outputs
from adaring_jax.errors import UserError

FINGERPRINT = outputs.RUN_MARK  # the run's identity (identity.py)
RESULTS = "results.json"  # written last: a run with it is finished
LOCK = ".lock"


class WorkdirError(UserError, RuntimeError):
    """A run directory that cannot be used: not writable, in use, or another experiment's."""


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_place(workdir: str, flag: str = "--workdir") -> None:
    """Raise WorkdirError if `workdir` cannot be a run directory whatever the experiment: not a
    writable folder, inside another run's directory (`outputs.check`), or a folder holding what
    a run writes without saying which experiment wrote it. Writes nothing."""
    if not workdir:
        raise WorkdirError(f"{flag} is empty: name the run directory")
    if "://" in workdir:
        raise WorkdirError(f"workdir {workdir!r}: results and metrics are written with plain "
                           "file I/O; use a local or mounted path")
    if os.path.islink(workdir) and not os.path.exists(workdir):
        raise WorkdirError(f"workdir {workdir} is a symbolic link to {os.readlink(workdir)}, "
                           "which does not exist: create its target, or pass another workdir")
    try:
        os.fsencode(workdir).decode("utf-8")
    except UnicodeDecodeError:
        raise WorkdirError(f"workdir {workdir!r} is not a UTF-8 path; Orbax and the run's "
                           "records need one: pass another workdir") from None
    existing = _nearest_existing(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir} is a file; pass a directory")
    if not os.path.isdir(existing):
        raise WorkdirError(f"workdir {workdir}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirError(f"workdir {workdir}: {existing} is not writable by this user")
    outputs.check(workdir, flag, "workdir")
    if os.path.exists(os.path.join(workdir, FINGERPRINT)):
        return
    leftovers = outputs.records_in(workdir)
    if leftovers:
        raise WorkdirError(f"workdir {workdir} holds {', '.join(leftovers)} but no "
                           f"{FINGERPRINT}: it is not known which experiment wrote them, and a "
                           "run would replace them. Use a new workdir, or move these away")


def check(workdir: str, run_identity: dict, data=None) -> None:
    """Raise WorkdirError if `workdir` cannot hold this experiment; writes nothing. `data` (the
    user's own data, `own.Table`) says in words what changed when its identity fields differ."""
    check_place(workdir)
    path = os.path.join(workdir, FINGERPRINT)
    if os.path.exists(path):
        _compare(path, run_identity, workdir, data)


def finished(workdir: str) -> bool:
    """Whether the run in `workdir` wrote its results (call after `check`)."""
    return os.path.exists(os.path.join(workdir, RESULTS))


def _compare(path: str, run_identity: dict, workdir: str, data=None) -> None:
    advice = (f"Use a new workdir for this experiment, or move {workdir} away if its results "
              "are not wanted.")
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise WorkdirError(f"{path} is unreadable ({e}). {advice}") from None
    diffs = identity.differences(saved, run_identity) if isinstance(saved, dict) else ["?"]
    if diffs:
        state = "finished" if finished(workdir) else "unfinished"
        of_data = [d for d in diffs if d.split(":")[0] in identity.DATA_FIELDS]
        words = _data_changes(workdir, data) if of_data else ""
        if words:  # said in words instead of two digests
            diffs = [d for d in diffs if d not in of_data]
        listed = "; differing fields:\n  " + "\n  ".join(diffs) if diffs else ""
        raise WorkdirError(f"workdir {workdir} belongs to a different experiment (its run is "
                           f"{state}){words}{listed}\n{advice}")


def _data_changes(workdir: str, data) -> str:
    """': its data changed: 3 images changed, 1 added (...)' from the run's record of its
    images (`outputs.IMAGES_RECORD`), or '' when it has none to compare with."""
    path = os.path.join(workdir, outputs.IMAGES_RECORD)
    if data is None or not hasattr(data, "changes") or not os.path.exists(path):
        return ""
    try:
        with open(path) as f:
            return f": its data changed: {data.changes(json.load(f))}"
    except (OSError, ValueError, AttributeError, TypeError):
        return ""


class Lock:
    """An exclusive advisory lock on `workdir/.lock` for the life of a run (process 0 only:
    the processes of one multi-host job share the directory)."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK)
        self._file = None

    def acquire(self) -> None:
        if jax.process_index() != 0:
            return
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):  # e.g. a filesystem without locks
                logging.warning("cannot lock %s (%s): two runs on this workdir would not be "
                                "stopped", self.path, e)
                self._file = f
                return
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise WorkdirError(f"workdir {os.path.dirname(self.path)} is in use by {holder}; "
                               "wait for that run to finish (or stop it), or use another "
                               "workdir") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the flock
            self._file = None


def acquire(workdir: str, run_identity: dict, data=None) -> Lock:
    """Create `workdir`, lock it, re-check and record the identity. The caller releases."""
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
    lock = Lock(workdir)
    lock.acquire()
    try:
        check(workdir, run_identity, data)  # again, under the lock: another may have finished
        path = os.path.join(workdir, FINGERPRINT)
        if jax.process_index() == 0 and not os.path.exists(path):
            atomic.write_json(path, run_identity, sort_keys=True)
    except BaseException:
        lock.release()
        raise
    return lock
