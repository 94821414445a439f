"""Class buckets: the class prompts of a task padded to a few fixed shapes, so that every
dataset and task of a table runs the same compiled train step and evaluation programs (read
from the persistent compile cache after the first run) instead of compiling its own.

The class count C is rounded up to a power of two of at least `MIN_CLASSES` (and to a multiple
of the device count), the prompt length L to a multiple of `LENGTH_STEP` (at most the text
tower's context). Padded class rows repeat the first prompt and are masked out of the loss,
the accuracies and the predictions (their logits are pushed far below any real one); padded
positions repeat the last column (end-of-text or padding), which the causal mask hides from
the pooled end-of-text position. Only sums of more (exactly zero) terms change, so the results
equal an unbucketed run's to float rounding. `config.data.class_bucket=False` turns it off.
"""

from __future__ import annotations

import numpy as np

MIN_CLASSES = 64  # the 11 base-to-novel datasets fall in 4 buckets: 64, 128, 256, 512
LENGTH_STEP = 8  # CoOp/MMA prompts are 7-20 tokens: one or two length buckets per table


def classes(n: int, devices: int = 1) -> int:
    """The bucket of `n` classes."""
    size = max(MIN_CLASSES, 1 << max(n - 1, 0).bit_length())
    return -(-size // devices) * devices


def length(n: int, context_length: int) -> int:
    """The bucket of prompts of `n` tokens."""
    return min(-(-n // LENGTH_STEP) * LENGTH_STEP, context_length)


def pad_ids(ids, rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, L) ids -> ((rows, columns) ids, (rows,) bool mask of the real classes)."""
    ids = np.asarray(ids)
    n, cols = ids.shape
    if rows < n or columns < cols:
        raise ValueError(f"ids of shape {ids.shape} do not fit the bucket ({rows}, {columns})")
    out = np.concatenate([ids, np.repeat(ids[:, -1:], columns - cols, axis=1)], axis=1)
    out = np.concatenate([out, np.repeat(out[:1], rows - n, axis=0)])
    return out, np.arange(rows) < n


def bucket_ids(ids, devices: int, context_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, L) prompt ids padded to their bucket, and the mask of the real classes."""
    ids = np.asarray(ids)
    return pad_ids(ids, classes(len(ids), devices), length(ids.shape[1], context_length))


def pad_rows(x, rows: int):
    """(C, ...) -> (rows, ...) repeating the first row (padded classes' reference features:
    real vectors, so normalizing them stays finite; they are masked out)."""
    x = np.asarray(x)
    return np.concatenate([x, np.repeat(x[:1], rows - len(x), axis=0)])
