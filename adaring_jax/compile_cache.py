"""XLA's persistent compilation cache, on by default for every command.

A run compiles the same programs (the training step, class features, accuracy) as the last run
with the same shapes, so a sweep or a table recompiles the same executables again and again.
JAX can keep them on disk and load them instead of compiling (`jax_compilation_cache_dir`).

Where: `$JAX_COMPILATION_CACHE_DIR` when set (JAX's own variable), else
`$XDG_CACHE_HOME/adaring-jax/xla` (default `~/.cache/adaring-jax/xla`). Off:
`ADARING_COMPILATION_CACHE=0`. The cache cannot change a result: JAX keys an entry by the
program, its compile options, the devices and the jax/jaxlib versions, and a miss compiles.
Deleting the folder is always safe.
"""

from __future__ import annotations

import os

import jax
from absl import logging

OFF = "ADARING_COMPILATION_CACHE"  # "0" (or "off", "false"): no persistent cache
MIN_COMPILE_SECONDS = 0.2  # cache programs that took at least this long to compile (JAX: 1 s)


def directory(environ=os.environ) -> str | None:
    """The cache folder this process would use, None when the cache is off."""
    if environ.get(OFF, "").strip().lower() in ("0", "off", "false", "no"):
        return None
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return environ["JAX_COMPILATION_CACHE_DIR"]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "adaring-jax", "xla")


def enable() -> str | None:
    """Point JAX at `directory()` (before anything compiles); the folder, or None when off or
    when it cannot be created (then one warning, and every program compiles as before)."""
    where = directory()
    if where is None:
        return None
    if "://" not in where:
        try:
            os.makedirs(where, exist_ok=True)
        except OSError as e:
            logging.warning("compilation cache off: cannot create %s (%s); set %s=0 to silence "
                            "this", where, e.strerror or e, OFF)
            return None
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return where
