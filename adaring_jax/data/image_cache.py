"""Rendered test images kept on disk: a table's runs render each test set once.

A rendered source's images (the `shapes` world and its suite) are a pure function of the
source's arguments, the indices and the renderer's code, and rendering is most of what an
evaluation of the embedded tasks costs on CPU: the default job's 25,600 test images take
longer to render than to classify. `rendered(source, indices)` returns the examples as an
in-memory source, rendering them (in threads, byte-identical to `source[i]`) and storing them
under `caches.images_dir()` the first time, reading them back every other time.

The key is a SHA-256 of the source's description (`describe()`: generator, split, domain or
task, seed, image size), the indices and the bytes of the renderer's modules, so any change
to those is a miss. An entry starts with the SHA-256 of its bytes, checked on every read: a
damaged entry is rendered again and replaced, with a one-line warning. Files and TFDS sources
are not cached (their decoding is theirs to change); neither is anything when the cache is off
(`ADARING_CACHE=0` or `ADARING_IMAGES_CACHE=0`) or under several processes. A miss only costs
the rendering.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import io
import os

import numpy as np
from absl import logging

from adaring_jax import atomic, caches
from adaring_jax.data import shapes, shapes_suite, source as sources

_CODE = (shapes.__file__, shapes_suite.__file__)
_CHUNK = 512  # images rendered per call


class _Rendered:
    """Examples 0..n-1: the cached images and their labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, base):
        self.images, self.label_of = images, labels
        self.classnames, self.template = base.classnames, base.template

    def __len__(self) -> int:
        return len(self.images)

    def labels(self) -> np.ndarray:
        return self.label_of

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": int(self.label_of[i])}


def _base(source, indices: np.ndarray):
    """(the rendered source under `source`, its indices of `indices`), or (None, None)."""
    while isinstance(source, sources.Subset):
        indices = source.indices[indices]
        source = source.source
    if isinstance(source, shapes.RenderedSource) and hasattr(source, "describe"):
        return source, indices
    return None, None


@functools.cache
def _code() -> bytes:
    """The renderer's modules, read once per process."""
    parts = []
    for path in _CODE:
        with open(path, "rb") as f:
            parts.append(os.path.basename(path).encode() + b"\0" + f.read())
    return b"".join(parts)


def _key(base, inner: np.ndarray) -> str:
    h = hashlib.sha256(base.describe().encode() + b"\0")
    h.update(np.ascontiguousarray(inner, np.int64).tobytes())
    h.update(_code())
    return h.hexdigest()


def _render(base, inner: np.ndarray, threads: int) -> np.ndarray:
    chunks = [inner[i:i + _CHUNK] for i in range(0, len(inner), _CHUNK)]
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        parts = list(pool.map(base.render_batch, chunks))
    size = base.image_size
    return np.concatenate(parts) if parts else np.zeros((0, size, size, 3), np.uint8)


_MAGIC = b"adaring-jax rendered images, sha256 "  # the first line of an entry, then .npy bytes


def _store(path: str, images: np.ndarray) -> None:
    """Write atomically (another run may read the same entry), with the digest of its bytes;
    a cache that cannot be written is skipped (it only saves time) and leaves no file."""
    buffer = io.BytesIO()
    np.save(buffer, images)
    body = buffer.getvalue()
    atomic.write_cache_entry(path, _MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n"
                             + body)


def _load(path: str, shape: tuple) -> np.ndarray | None:
    """The entry's images if it is there and intact; a damaged entry (its bytes do not match
    the digest written with it, or not the expected shape) is reported in one line and None
    returned, so that it is rendered again and replaced."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            header, body = f.readline(), f.read()
        if not header.startswith(_MAGIC):
            raise ValueError("not an entry of this cache")
        if header[len(_MAGIC):].strip().decode() != hashlib.sha256(body).hexdigest():
            raise ValueError("its bytes do not match the digest written with it")
        images = np.load(io.BytesIO(body))
        if images.shape != shape or images.dtype != np.uint8:
            raise ValueError(f"it holds {images.dtype} {images.shape}, not uint8 {shape}")
        return images
    except (OSError, ValueError, UnicodeDecodeError) as e:
        logging.warning("rendered-image cache entry %s is damaged (%s); rendering it again",
                        path, e)
        return None


def rendered(source, indices, process_count: int = 1, threads: int = 1):
    """(source, indices) to evaluate: for a rendered source with the cache on, an in-memory
    source of examples 0..n-1 holding `source[indices]`; otherwise the arguments unchanged."""
    where = caches.images_dir()
    indices = np.asarray(indices, np.int64)
    base, inner = _base(source, indices)
    if where is None or process_count != 1 or base is None or len(indices) == 0:
        return source, indices
    key = _key(base, inner)
    path = os.path.join(where, key[:2], key + ".images")
    images = _load(path, (len(inner), base.image_size, base.image_size, 3))
    if images is None:
        images = _render(base, inner, threads)
        _store(path, images)
    labels = np.asarray(source.labels(), np.int64)[indices]
    return _Rendered(images, labels, base), np.arange(len(indices), dtype=np.int64)
