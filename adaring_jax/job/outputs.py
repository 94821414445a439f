"""Where a command may write what the user named: one rule for every command, checked before
any work (`predict --out`, `export --out`, `compress --out`, a job's `--workdir`).

- Nothing goes into a run directory (a folder holding `experiment.json`) but that run's own
  records: a file or folder named inside one is refused, `--overwrite` or not, so that a run
  keeps reporting what it did (a `predict --out=RUN/results.json` would replace its results).
  A job's workdir may be a run directory -- its own, which `workdir.check` compares -- but not
  a folder inside another run's.
- An existing file is never replaced unless the command is given `--overwrite`; an existing
  folder only when it is empty, or with `--overwrite` when it holds an earlier output of the
  same kind (`marker`: e.g. an export's `adapter_config.json`), never another folder.
- The folder the output goes into must exist and be writable.
A refusal is an `OutputError` (exit 2, nothing written).
"""

from __future__ import annotations

import fnmatch
import os

from adaring_jax.errors import UserError

RUN_MARK = "experiment.json"  # the run's identity (workdir.FINGERPRINT): marks a run directory
IMAGES_RECORD = "images.json"  # the user's own images as the run saw them (own.Table.record)
# What a run writes into its directory (besides RUN_MARK and its lock): a folder holding any of
# these but no RUN_MARK is not known to be whose, and is not taken as a workdir.
RECORDS = ("results.json", "results.md", "config.json", "task.json", "draw.json",
           "metrics.jsonl", "checkpoints", "tensorboard", "split_zhou_*.json", IMAGES_RECORD,
           "export")


class OutputError(UserError, ValueError):
    """A path a command was asked to write that it must not (or cannot) write."""


def run_directory_of(path: str, strict: bool = False) -> str | None:
    """The run directory that holds `path` (or is `path`, unless `strict`), following symbolic
    links; None when there is none."""
    here = os.path.realpath(os.path.abspath(path))
    if strict:
        here = os.path.dirname(here)
    while True:
        if os.path.isfile(os.path.join(here, RUN_MARK)):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def records_in(folder: str) -> list[str]:
    """The names in `folder` that a run writes (`RECORDS`), sorted."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n for n in names if any(fnmatch.fnmatch(n, r) for r in RECORDS))


def check(path: str, flag: str = "--out", kind: str = "file", overwrite: bool = False,
          marker: str = "") -> None:
    """Refuse (OutputError) writing `path`, a `kind` of "file", "folder" or "workdir" that the
    user named with `flag`, by the rules above; reads, writes nothing."""
    if not path:
        raise OutputError(f"{flag} is empty: name the {kind} to write")
    run = run_directory_of(path, strict=kind == "workdir")
    if run is not None:
        where = "is" if os.path.realpath(path) == run else "is inside"
        raise OutputError(
            f"{flag}={path} {where} the run directory {run}, which holds only what its run "
            "writes (results.json, config.json, checkpoints, ...); nothing else is written "
            f"there, --overwrite or not: choose a path outside it")
    if kind == "workdir":
        return  # workdir.check takes it from here (its own identity, its records)
    parent = os.path.dirname(os.path.abspath(path))
    if kind == "file" and os.path.isdir(path):
        raise OutputError(f"{flag}={path} is a folder; give a file name")
    if kind == "folder" and os.path.lexists(path) and not os.path.isdir(path):
        raise OutputError(f"{flag}={path} is a file; give a folder to create")
    if os.path.lexists(path):
        replaceable = kind == "file" or (marker and os.path.isfile(os.path.join(path, marker)))
        empty = kind == "folder" and os.path.isdir(path) and not os.listdir(path)
        if not empty and not (overwrite and replaceable):
            what = "exists" if kind == "file" else "exists and is not empty"
            advice = "give --overwrite to replace it, or choose another name" if (
                kind == "file" or (marker and replaceable)) else (
                f"it is not an earlier output (no {marker}), so it is never replaced: choose "
                "a new folder" if marker else "choose a new folder")
            raise OutputError(f"{flag}={path} {what}; nothing is replaced unless asked: "
                              f"{advice}")
    if not os.path.isdir(parent):
        raise OutputError(f"{flag}={path}: the folder {os.path.dirname(path) or parent} does not "
                          "exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{flag}={path}: the folder {parent} is not writable by this user")
