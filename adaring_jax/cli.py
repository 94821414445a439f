"""What every command (`main`, `predict`, `compress`, `export`) does with errors and logging.

A problem the user can fix (`errors.UserError`: a config value, a path, data, a checkpoint, a
workdir) or an `OSError` ends in one `error: ...` line on stderr and exit status 2; anything
else in a short report and status 1. `--traceback` (or ADARING_TRACEBACK=1) adds the Python
traceback. Other libraries' log lines (Orbax's warnings, and the tracebacks its writer threads
log on the way to an error the command then reports) are off unless `--verbosity=0` is given;
the project's own warnings always show.
"""

from __future__ import annotations

import ast
import os
import re
import sys
import threading
import traceback

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before transformers is imported

from absl import flags, logging  # noqa: E402

from adaring_jax import caches, host  # noqa: E402
from adaring_jax.data import prompts  # noqa: E402
from adaring_jax.errors import STOPPED_STATUS, Stopped, UserError  # noqa: E402


class UsageError(UserError, ValueError):
    """A command-line flag or argument that is not valid."""


def at_least(flag: str, value, low) -> None:
    """Refuse `--flag=value` under `low` (before any work)."""
    if value is not None and value < low:
        raise UsageError(f"--{flag}={value} must be >= {low}")


def class_names(names) -> list[str]:
    """Class names given on the command line, stripped; empty or repeated ones refused."""
    names = [n.strip() for n in names]
    if not names or not all(names):
        raise UsageError(f"--classes has an empty class name: {names}")
    folded = [prompts.prompt_key(n) for n in names]
    twice = sorted({n for n, f in zip(names, folded) if folded.count(f) > 1})
    if twice:
        raise UsageError(f"--classes names a class twice (case and '_' ignored): {twice}")
    return names

_TRACEBACK = flags.DEFINE_bool("traceback", False, "Print the Python traceback of an error "
                               "(also: environment variable ADARING_TRACEBACK=1).")


def flag_error_message(error: BaseException, argv=()) -> str:
    """The project's own message when a config file raised it, else absl's first and last
    lines (config_flags pastes whole tracebacks into its messages)."""
    cause = error
    while cause is not None and not isinstance(cause, UserError):
        cause = cause.__cause__ or cause.__context__
    text = str(cause or error)
    for _ in range(3):  # KeyError wraps its message in reprs: unwrap them
        if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
            try:
                text = str(ast.literal_eval(text))
                continue
            except (ValueError, SyntaxError):
                pass
        break
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        ours = re.match(r"adaring_jax\.[\w.]+Error: (.*)", lines[-1])
        return ours.group(1) if ours else f"{lines[0]} {lines[-1]}"
    unreadable = re.search(r"\[Errno \d+\] (.*)", str(error))
    if isinstance(error, OSError) and unreadable:
        return f"cannot load the config file: {unreadable.group(1)}"
    joined = " ".join(lines)
    suggestion = re.search(r'Did you mean "([\w.]+)"', joined)
    missing = re.fullmatch(r"""["'\\]*([\w.]+)["'\\]*(?: Did you mean.*)?""", joined)
    if isinstance(error, (AttributeError, KeyError)) and missing:  # --config.<unknown>=...
        given = [a.split("=")[0] for a in argv if a.startswith("--config.")
                 and missing.group(1) in a.split("=")[0].split(".")]
        hint = f"; did you mean {suggestion.group(1)!r}?" if suggestion else ""
        return (f"unknown config field {given[0] if given else missing.group(1)}: the config "
                f"has no such field{hint} (the fields are listed, one comment each, in "
                "adaring_jax/config_args.py and the method's module in adaring_jax/adapters/)")
    return " ".join(lines)


def parse_flags(argv):
    """absl's parser, with bad flags (an unknown --config.x, a bad value) as one message."""
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001 - flags.Error, or config_flags' AttributeError...
        if tracebacks():
            traceback.print_exception(e)
        command = os.path.basename(argv[0]) if argv else "main"
        command = "main" if command in ("__main__.py", "") else command.removesuffix(".py")
        print(f"error: {flag_error_message(e, argv)}\nSee: python -m adaring_jax.{command} "
              "--helpfull",
              file=sys.stderr, flush=True)
        sys.exit(2)


def tracebacks() -> bool:
    wanted = os.environ.get("ADARING_TRACEBACK", "") not in ("", "0")
    return wanted or (flags.FLAGS.is_parsed() and _TRACEBACK.value)


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_BACKGROUND: list[BaseException] = []  # errors raised in other threads, first one first


def _ours_or_critical(record) -> bool:
    """Keep the project's own log lines; drop other libraries' (Orbax, asyncio) below
    CRITICAL. Their errors are failures of a background save, which reach the user as the
    exception that ends the command (one line), not as the screenfuls they log on the way."""
    return record.levelno >= logging.converter.STANDARD_CRITICAL or os.path.abspath(
        record.pathname).startswith(_PACKAGE)


def _background_error(args) -> None:
    """threading.excepthook / sys.excepthook outside the main flow: keep the error for the
    end of the command (`run`) instead of printing a traceback from a writer thread (Orbax,
    TensorStore callbacks, tensorboard's event writer) in the middle of the output."""
    error = getattr(args, "exc_value", args)
    if isinstance(error, BaseException) and not isinstance(error, SystemExit):
        _BACKGROUND.append(error)
        if tracebacks():
            traceback.print_exception(error)


def quiet_logging() -> None:
    """Only our own log lines, unless --verbosity was given (then every library's)."""
    handler = logging.get_absl_handler()
    handler.removeFilter(_ours_or_critical)
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
        handler.addFilter(_ours_or_critical)


# What a command that failed on a full disk leaves (`run`'s `after_full_disk`).
TRAINING_RESUMES = "nothing half-written is kept; training resumes from its last checkpoint"
WROTE_NOTHING = "nothing was written: the output is written whole, at the end"
EXPORT_REMOVED = ("nothing was written: the half-built export beside --out was removed and "
                  "--out was not created")


def fail(error: BaseException, after_full_disk: str = TRAINING_RESUMES) -> int:
    """Print `error` for the user; the exit status."""
    if tracebacks():
        traceback.print_exception(error)
    full = disk_full(error)
    if full is not None:
        print(f"error: the disk is full{full}: free space and run the same command again "
              f"({after_full_disk})", file=sys.stderr, flush=True)
        return 2
    if isinstance(error, (UserError, OSError)):  # OSError: permissions, missing files...
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    print(f"error: {type(error).__name__}: {error}\nThis is unexpected: rerun with --traceback "
          "(or ADARING_TRACEBACK=1) for the traceback, and report it.", file=sys.stderr,
          flush=True)
    return 1


def disk_full(error: BaseException) -> str | None:
    """' (writing where)', or '' when where is not known, if `error` or what caused it is a
    full disk (Orbax/TensorStore report it as RESOURCE_EXHAUSTED, safetensors as its own
    error, Python as ENOSPC); None if it is not."""
    seen = 0
    while error is not None and seen < 10:
        text = str(error)
        if getattr(error, "errno", None) == 28 or "No space left on device" in text or (
                "RESOURCE_EXHAUSTED" in text and "space" in text.lower()):
            quoted = re.findall(r'"(/[^"]+)"', text) or re.findall(r"(?<!\S)(/[^\s'\"]+)", text)
            where = getattr(error, "filename", None) or (quoted[0] if quoted else "")
            where = where.split(".orbax-checkpoint-tmp")[0]  # the step, not Orbax's insides
            return f" (writing {where})" if where else ""
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def run(body, after_full_disk: str = TRAINING_RESUMES) -> int:
    """`body()` under the error surface above; the exit status. An error that a background
    thread raised fails the command too, after the main flow, as one line. `after_full_disk`
    says what a full disk left behind (a command that does not train says so)."""
    quiet_logging()
    caches.enable_compilation_cache()  # before anything compiles
    host.tune_malloc()  # before XLA allocates its buffers
    threading.excepthook = _background_error
    sys.excepthook = lambda kind, value, tb: _background_error(value)
    sys.unraisablehook = _background_error  # e.g. tensorboard's writer flushing at exit
    try:
        body()
        if _BACKGROUND:
            raise _BACKGROUND[0]
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C): checkpoints already saved are kept; run the same command "
              "to resume", file=sys.stderr, flush=True)
        return 130
    except Stopped as e:
        print(f"stopped: {e}", file=sys.stderr, flush=True)
        return STOPPED_STATUS
    except Exception as e:  # noqa: BLE001 - the one place errors meet the user
        return fail(e, after_full_disk)
    return 0
