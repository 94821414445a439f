"""What every command (`main`, `predict`, `compress`, `export`) does with errors and logging.

A problem the user can fix (`errors.UserError`: a config value, a path, data, a checkpoint, a
workdir) or an `OSError` ends in one `error: ...` line on stderr and exit status 2; anything
else in a short report and status 1. `--traceback` (or ADARING_TRACEBACK=1) adds the Python
traceback. absl/Orbax INFO logging is off unless `--verbosity=0` is given.
"""

from __future__ import annotations

import os
import sys
import traceback

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before transformers is imported

from absl import flags, logging  # noqa: E402

from adaring_jax.errors import UserError  # noqa: E402

_TRACEBACK = flags.DEFINE_bool("traceback", False, "Print the Python traceback of an error "
                               "(also: environment variable ADARING_TRACEBACK=1).")


def tracebacks() -> bool:
    wanted = os.environ.get("ADARING_TRACEBACK", "") not in ("", "0")
    return wanted or (flags.FLAGS.is_parsed() and _TRACEBACK.value)


def quiet_logging() -> None:
    """absl and Orbax INFO off, unless --verbosity was given."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def fail(error: BaseException) -> int:
    """Print `error` for the user; the exit status."""
    if tracebacks():
        traceback.print_exception(error)
    if isinstance(error, (UserError, OSError)):  # OSError: disk full, permissions...
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    print(f"error: {type(error).__name__}: {error}\nThis is unexpected: rerun with --traceback "
          "(or ADARING_TRACEBACK=1) for the traceback, and report it.", file=sys.stderr,
          flush=True)
    return 1


def run(body) -> int:
    """`body()` under the error surface above; the exit status."""
    quiet_logging()
    try:
        body()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place errors meet the user
        return fail(e)
    return 0
