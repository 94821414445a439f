"""Parsing of `get_config(arg)` arguments: `--config=configs/fewshot.py:method=mma,arch=vit_b16`.

`arg` is a comma-separated list of `key=value` pairs or bare `key`s (meaning True). Values take
the type of the key's default; tuples are written with `+` (`ranks=2+4+8`).
"""

from __future__ import annotations

import ml_collections


def _convert(key: str, value: str, default):
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", ""):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
        if isinstance(default, tuple):
            kind = type(default[0]) if default else str
            return tuple(kind(v) for v in value.split("+") if v)
        return type(default)(value)
    except ValueError:
        raise ValueError(f"config argument {key}={value!r}: expected a "
                         f"{type(default).__name__} like {default!r}") from None


def parse(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """'k=v,flag' -> ConfigDict over `defaults`; an unknown key lists the valid ones."""
    out = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; valid: {', '.join(defaults)}")
        out[key] = _convert(key, value.strip() if "=" in item else "true", defaults[key])
    return ml_collections.ConfigDict(out)
