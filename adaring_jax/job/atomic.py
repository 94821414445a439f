"""Files written whole or not at all: written beside, then renamed over the target."""

from __future__ import annotations

import json
import os


def write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None:  # a failed write (a full disk) names no file: name the target
            raise OSError(e.errno, e.strerror, path) from e
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str, value, sort_keys: bool = False) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=sort_keys) + "\n")
