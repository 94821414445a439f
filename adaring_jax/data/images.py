"""Image decoding for every file- or record-backed source: RGB uint8, failures counted, not raised.

Grayscale (8- and 16-bit), CMYK, palette and alpha images are converted to RGB; a file that cannot be decoded
becomes a black image marked `valid: False` (the pipeline masks it out) and is counted (the
first one logged), never raised mid-epoch.
"""

from __future__ import annotations

import io
import logging
import threading

import numpy as np
from PIL import Image


class BadImages:
    """Thread-safe set of images that could not be decoded; the first is logged (one line per
    source: a folder of broken files is not a screenful), all are counted."""

    def __init__(self):
        self._lock = threading.Lock()
        self.paths: set[str] = set()

    def add(self, path: str, error: Exception):
        with self._lock:
            if path not in self.paths:
                self.paths.add(path)
                if len(self.paths) == 1:
                    logging.warning("skipping unreadable image %s (%s); further unreadable "
                                    "images of this split are counted (results.json), not "
                                    "logged", path, error)

    def __len__(self):
        return len(self.paths)


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Gray pixels of a deeper format to 8 bits: 16-bit range (PNG, TIFF) scaled by 255/65535,
    floats in [0, 1] by 255."""
    if pixels.dtype.kind == "f":
        scale = 255.0 if pixels.max(initial=0.0) <= 1.0 else 255.0 / 65535.0
    else:
        scale = 255.0 / 65535.0
    return np.clip(np.rint(pixels.astype(np.float64) * scale), 0, 255).astype(np.uint8)


def decode(data, name: str, bad: BadImages) -> tuple[np.ndarray, bool]:
    """Bytes, path or array -> (uint8 RGB (H, W, 3), valid)."""
    try:
        if isinstance(data, np.ndarray):
            image = Image.fromarray(data.squeeze(-1) if data.ndim == 3 and data.shape[-1] == 1
                                    else data)
        else:
            image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
        image.load()
        if image.mode.startswith(("I", "F")):  # 16-bit/32-bit gray: PIL's convert clips at 255
            image = Image.fromarray(_to_uint8(np.asarray(image)))
        if image.mode != "RGB":  # L, P, CMYK, RGBA, LA ...
            image = image.convert("RGB")
        return np.asarray(image), True
    except Exception as e:  # PIL raises many types for truncated/corrupt files
        bad.add(name, e)
        return np.zeros((8, 8, 3), np.uint8), False
