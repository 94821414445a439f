"""Zero-shot accuracy computed once: a content-keyed cache shared by every method and seed.

Every run of a table evaluates the frozen CLIP's zero-shot classifier on the same test images
with the same prompts; only the adapted row differs. The zero-shot accuracy of one split is a
function of the backbone's weights, the prompt ids (class names, template, tokenizer), the
images and labels evaluated, the image size, and the code that decodes, preprocesses and
encodes them. The key is a SHA-256 of all of these:

- the weights: every frozen leaf's path, dtype, shape and bytes;
- the prompts: the (C, L) id array itself;
- the images: for the rendered shapes world its generator's arguments (task, split, seed,
  size) and the indices; for files their paths, sizes and modification times; a source of
  another kind (TFDS) is not cached, so it is evaluated every time;
- the labels of the evaluated examples, the image size, the evaluation batch, the devices and
  the jax version (the arithmetic may depend on them);
- the code: the bytes of every module under `models/` and `data/` and of `job/evaluate.py`,
  so that any change to them invalidates every entry.

Entries are small JSON files in `caches.zeroshot_dir()`, each with the digest of its values;
a missing entry is a miss, a damaged one (unreadable, not matching its digest, another key)
is reported in one line and computed again. Single-process runs only (every process would have to agree on a hit).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os

import jax
import numpy as np
from absl import logging

from adaring_jax import caches
from adaring_jax.data import shapes, shapes_suite, source as sources
from adaring_jax.data.sources import FolderSource

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CODE = sorted(glob.glob(os.path.join(_PACKAGE, "models", "*.py"))
               + glob.glob(os.path.join(_PACKAGE, "data", "*.py"))
               + [os.path.join(_PACKAGE, "job", "evaluate.py")])
_code_digest: str | None = None


def _code() -> str:
    global _code_digest
    if _code_digest is None:
        h = hashlib.sha256()
        for path in _CODE:
            with open(path, "rb") as f:
                h.update(os.path.relpath(path, _PACKAGE).encode() + b"\0" + f.read())
        _code_digest = h.hexdigest()
    return _code_digest


def enabled() -> bool:
    return caches.zeroshot_dir() is not None and jax.process_count() == 1


def any_cacheable(sources) -> bool:
    """Whether some source can be described (so that the weights are worth hashing)."""
    return enabled() and any(_images(s, np.zeros(0, np.int64)) is not None for s in sources)


def weights_digest(frozen) -> str:
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(frozen)[0]:
        a = np.asarray(leaf)
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _images(source, indices: np.ndarray) -> str | None:
    """What the examples `indices` of `source` are, as text; None when it cannot be said."""
    if isinstance(source, sources.Subset):
        inner = source.indices[indices]
        return _images(source.source, inner)
    if isinstance(source, (shapes.ShapesSource, shapes_suite.SuiteSource)):
        what = source.describe()  # the generator's arguments
    elif isinstance(source, FolderSource):
        rows = []
        for i in np.asarray(indices).tolist():
            path = os.path.join(source.image_dir, source.paths[i])
            try:
                st = os.stat(path)
                rows.append(f"{path}|{st.st_size}|{st.st_mtime_ns}")
            except OSError:
                rows.append(f"{path}|missing")
        return "folder\n" + "\n".join(rows)
    else:
        return None
    return what + "|" + hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest()


def key(weights: str, ids, source, indices, image_size: int, batch_size: int,
        devices: int) -> str | None:
    """The entry's key for evaluating `source[indices]` with prompt `ids` in batches of
    `batch_size` on `devices` devices (the arithmetic, hence a near-tie's argmax, may depend
    on both), or None: no cache (another kind of source, several processes, or off)."""
    if not enabled() or not weights:
        return None
    images = _images(source, np.asarray(indices))
    if images is None:
        return None
    labels = np.asarray(source.labels())[np.asarray(indices)]
    h = hashlib.sha256()
    device = jax.devices()[0]
    setting = f"{image_size}|{batch_size}|{devices}|{device.platform}|{device.device_kind}|" \
              f"{jax.__version__}"
    for part in (weights, _code(), images, setting):
        h.update(part.encode() + b"\0")
    h.update(np.asarray(ids, np.int64).tobytes() + np.asarray(ids).shape.__repr__().encode())
    h.update(np.asarray(labels, np.int64).tobytes())
    return h.hexdigest()


def _path(entry: str) -> str:
    return os.path.join(caches.zeroshot_dir(), entry[:2], entry + ".json")


def _check(value: dict) -> str:
    """The digest written with an entry: of its key and values."""
    return hashlib.sha256(json.dumps([value["key"], value["accuracy"], value["counted"]])
                          .encode()).hexdigest()


def load(entry: str | None) -> tuple[float, int] | None:
    """The cached (accuracy, images counted), or None: no entry (a miss), or a damaged one
    (its values do not match the digest written with them: one warning, then recomputed and
    replaced by `store`)."""
    if entry is None:
        return None
    path = _path(entry)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            value = json.load(f)
        if value.get("check") != _check(value):
            raise ValueError("its values do not match the digest written with them")
        if value["key"] == entry:
            return float(value["accuracy"]), int(value["counted"])
        raise ValueError("it holds another key")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        logging.warning("zero-shot cache entry %s is damaged (%s); computing it again", path, e)
    return None


def store(entry: str | None, accuracy: float, counted: int) -> None:
    """Keep an entry, with the digest of its values; a cache that cannot be written is
    skipped (it only saves time) and leaves no file."""
    if entry is None:
        return
    path = _path(entry)
    tmp = f"{path}.{os.getpid()}.tmp"
    value = {"key": entry, "accuracy": accuracy, "counted": counted}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w") as f:
            json.dump({**value, "check": _check(value)}, f)
        os.replace(tmp, path)
    except OSError:
        pass
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
