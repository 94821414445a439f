"""The one run skeleton every job (adaptation, pretraining) goes through, in this order:

1. the run's identity (`identity.of`: the config, plus what it names but does not hold);
2. the workdir checked against it (`workdir.check`: writable, not another experiment's);
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
        data_identity: dict | None = None) -> dict:
    """Run a job in `workdir` by the steps above; its results."""
    run_identity = identity.of(config, data_identity)
    workdirs.check(workdir, run_identity)
    if workdirs.finished(workdir):  # the same experiment, done: report it, write nothing
        return report.finished(workdir)
    prepared = prepare()
    lock = workdirs.acquire(workdir, run_identity)  # every input is known good
    try:
        return execute(prepared)
    finally:
        lock.release()
