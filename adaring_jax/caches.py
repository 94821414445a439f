"""The per-user caches every command shares: compiled programs, zero-shot results, rendered
images and file digests.

A run compiles the same programs (the training step, class features, accuracy) as the last run
with the same shapes, and evaluates the same zero-shot CLIP on the same test images as every
other method and seed of a table. Both are kept on disk and reused:

- `xla/`: JAX's persistent compilation cache (`jax_compilation_cache_dir`); an entry is keyed
  by the program, its compile options, the devices and the jax/jaxlib versions;
- `zeroshot/`: zero-shot accuracies keyed by the content of what they depend on
  (`job/zeroshot_cache.py`: the weights, the prompt ids, the images, the code);
- `images/`: the rendered test images of the embedded tasks, keyed by the generator's
  arguments, the indices and the renderer's code (`data/image_cache.py`; 3 KB an image, 76 MB
  for the default job's test set);
- `digests/`: the content digest of each file of the user's own data folders and lists, with
  its size and modification time (`data/file_digests.py`), so that a run's identity covers its
  images without reading an unchanged folder again.

Each entry of the last three carries a digest of its content, written with it and checked when
it is read: a damaged entry is never used but recomputed and replaced, with a one-line warning
(the compiled programs are JAX's to check).

Where: `$ADARING_CACHE_DIR`, else `$XDG_CACHE_HOME/adaring-jax` (default
`~/.cache/adaring-jax`); JAX's own `$JAX_COMPILATION_CACHE_DIR` wins for the programs. Off:
`ADARING_CACHE=0` for all, `ADARING_COMPILATION_CACHE=0`, `ADARING_ZEROSHOT_CACHE=0`,
`ADARING_IMAGES_CACHE=0` or `ADARING_DIGESTS_CACHE=0` for one. A cache cannot change a result (a
miss computes); deleting the folders is always safe. `ADARING_COMPILATION_CACHE_MIN_SECONDS`
(default 0.2) is the least compile time of a program that is stored: the tests set 0, so that
their many short commands compile no small program twice.
"""

from __future__ import annotations

import os

import jax
from absl import logging

MIN_COMPILE_SECONDS = 0.2  # cache programs that took at least this long to compile (JAX: 1 s)
_OFF = ("0", "off", "false", "no")


def _off(environ, name: str) -> bool:
    return any(environ.get(v, "").strip().lower() in _OFF
               for v in ("ADARING_CACHE", f"ADARING_{name.upper()}_CACHE"))


def root(environ=os.environ) -> str:
    if environ.get("ADARING_CACHE_DIR"):
        return environ["ADARING_CACHE_DIR"]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "adaring-jax")


def compilation_dir(environ=os.environ) -> str | None:
    """The compiled-programs folder this process would use, None when that cache is off."""
    if _off(environ, "compilation"):
        return None
    return environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(root(environ), "xla")


def zeroshot_dir(environ=os.environ) -> str | None:
    """The zero-shot results folder, None when that cache is off."""
    return None if _off(environ, "zeroshot") else os.path.join(root(environ), "zeroshot")


def images_dir(environ=os.environ) -> str | None:
    """The rendered test images folder, None when that cache is off."""
    return None if _off(environ, "images") else os.path.join(root(environ), "images")


def digests_dir(environ=os.environ) -> str | None:
    """The file digests folder, None when that cache is off."""
    return None if _off(environ, "digests") else os.path.join(root(environ), "digests")


def enable_compilation_cache() -> str | None:
    """Point JAX at `compilation_dir()` (before anything compiles); the folder, or None when
    off or when it cannot be created (then one warning, and every program compiles)."""
    where = compilation_dir()
    if where is None:
        return None
    if "://" not in where:
        try:
            os.makedirs(where, exist_ok=True)
        except OSError as e:
            logging.warning("compilation cache off: cannot create %s (%s); set "
                            "ADARING_COMPILATION_CACHE=0 to silence this", where, e.strerror or e)
            return None
    jax.config.update("jax_compilation_cache_dir", where)
    least = os.environ.get("ADARING_COMPILATION_CACHE_MIN_SECONDS", "")
    try:
        least = float(least) if least else MIN_COMPILE_SECONDS
    except ValueError:
        logging.warning("ADARING_COMPILATION_CACHE_MIN_SECONDS=%r is not a number; using %s",
                        least, MIN_COMPILE_SECONDS)
        least = MIN_COMPILE_SECONDS
    jax.config.update("jax_persistent_cache_min_compile_time_secs", least)
    return where
