"""CLIP image preprocessing, as Hugging Face's `CLIPImageProcessor` does it.

Evaluation: convert to RGB, bicubic resize so the short side is `size` (long side truncated to an
int), center crop to `size` x `size`, scale to [0, 1], normalize with CLIP's mean and std. The
functions work on PIL images and numpy arrays so any input pipeline (tf.data, grain, a loop) can
call them; they return float32 HWC arrays.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette, CMYK and alpha images -> 3-channel RGB (alpha dropped, as HF does)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """Bicubic resize so that the shorter side is `size`, keeping the aspect ratio."""
    w, h = image.size
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    return image if new == (w, h) else image.resize(new, Image.Resampling.BICUBIC)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Crop the central `size` x `size` window of an HWC array (zero-pads a smaller image)."""
    h, w = image.shape[:2]
    if h < size or w < size:
        pad_h, pad_w = max(size - h, 0), max(size - w, 0)
        image = np.pad(image, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                               (0, 0)))
        h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


def normalize(image: np.ndarray) -> np.ndarray:
    """uint8 (or [0, 255] float) HWC RGB -> float32 standardized with CLIP's mean and std."""
    x = np.asarray(image, np.float32) / 255.0
    return (x - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)


def eval_transform(image: Image.Image, size: int) -> np.ndarray:
    """A PIL image -> (size, size, 3) float32 model input."""
    image = resize_short_side(to_rgb(image), size)
    return normalize(center_crop(np.asarray(image), size))


def load_images(paths: Iterable[str], size: int) -> np.ndarray:
    """Image files -> a (B, size, size, 3) float32 batch."""
    batch = []
    for path in paths:
        with Image.open(path) as image:
            batch.append(eval_transform(image, size))
    return np.stack(batch)
