"""The one run skeleton every job (adaptation, pretraining) goes through, in this order:

1. the run's identity (`identity.of`: the config, plus what it names but does not hold: the
   user's own data, `data.identity()`);
2. the workdir checked against it (`workdir.check`: writable, not another experiment's; when
   the data changed, what changed is said in words, `data.changes`);
3. a finished run of the same identity: its results reported again, nothing written;
4. `prepare()`: everything read and checked (data, backbone, warm start) -- still no write;
5. the workdir created, locked and the identity recorded (`workdir.acquire`);
6. `execute(prepared)`: the job's own work, which writes its results last (`report`).
The caller validates the config first (`validation.validate`).
"""

from __future__ import annotations

from typing import Any, Callable

from adaring_jax.job import identity, report, workdir as workdirs


def run(config, workdir: str, prepare: Callable[[], Any], execute: Callable[[Any], dict],
        data=None) -> dict:
    """Run a job in `workdir` by the steps above; its results. `data`: the user's own data
    (`own.Table`/`TfdsTable`), None for a preset."""
    run_identity = identity.of(config, data.identity() if data is not None else None)
    workdirs.check(workdir, run_identity, data)
    if workdirs.finished(workdir):  # the same experiment, done: report it, write nothing
        return report.finished(workdir)
    prepared = prepare()
    lock = workdirs.acquire(workdir, run_identity, data)  # every input is known good
    try:
        return execute(prepared)
    finally:
        lock.release()
