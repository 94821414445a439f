"""Files written whole or not at all: written beside, then renamed over the target (or, when
the target must not be replaced, linked to its name, which fails if another process made it in
the meantime). Files are left with the permissions the user's umask gives a new file."""

from __future__ import annotations

import json
import os
import tempfile


def umask() -> int:
    """The process's umask (read by setting it, and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_permissions(path: str) -> None:
    """Give `path` (and, for a folder, what is in it) the permissions of a newly created file or
    folder: writers such as `tempfile.mkstemp` and safetensors create theirs readable by the
    owner only."""
    mask = umask()
    for top, dirs, files in os.walk(path) if os.path.isdir(path) else [("", [], [path])]:
        for name in files:
            os.chmod(os.path.join(top, name), 0o666 & ~mask)
        for name in dirs:
            os.chmod(os.path.join(top, name), 0o777 & ~mask)
    if os.path.isdir(path):
        os.chmod(path, 0o777 & ~mask)


def write_text(path: str, text: str, replace: bool = True) -> None:
    """Write `path` whole; with `replace=False` an existing file is not replaced
    (FileExistsError), even one another process creates while this one writes."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        if replace:
            os.replace(tmp, path)
        else:
            _link(tmp, path)
    except OSError as e:
        if e.filename is None:  # a failed write (a full disk) names no file: name the target
            raise OSError(e.errno, e.strerror, path) from e
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _link(tmp: str, path: str) -> None:
    try:
        os.link(tmp, path)  # fails if `path` exists
    except FileExistsError:
        raise FileExistsError(17, "File exists (made while this command ran; not replaced)",
                              path) from None
    except OSError:  # a file system without hard links
        if os.path.lexists(path):
            raise FileExistsError(17, "File exists (not replaced)", path) from None
        os.replace(tmp, path)


def write_json(path: str, value, sort_keys: bool = False) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=sort_keys) + "\n")


def write_cache_entry(path: str, data: bytes) -> bool:
    """Write a cache entry whole, beside then renamed over `path` (another process may read
    it), with the user's normal permissions. A cache only saves time: a write that fails
    (full disk, read-only folder) returns False and leaves no file."""
    tmp = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        normal_permissions(tmp)  # mkstemp's files are owner-only
        os.replace(tmp, path)
        tmp = None
        return True
    except OSError:
        return False
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
