"""Evaluation protocols (CoOp/MMA standard): few-shot draws and the base/novel class split.

Every function is a pure function of the full label array and a seed, so every process of a
multi-host job computes the same draw and then reads only its own shard of it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Sequence

import numpy as np


def fewshot_indices(labels, shots: int, seed: int, classnames: Sequence[str] | None = None,
                    exclude=None) -> np.ndarray:
    """`shots` examples per class drawn with a seeded RNG; sorted indices into `labels`.

    Each class draws from its own generator keyed by (seed, class), so a class's draw does not
    depend on the other classes. `exclude` (indices) are never drawn (e.g. the train draw, when
    validation comes from the same split). A class with fewer than `shots` examples keeps all
    it has and is reported by name.
    """
    labels = np.asarray(labels)
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    banned = np.zeros(len(labels), bool)
    if exclude is not None and len(exclude):
        banned[np.asarray(exclude, np.int64)] = True
    picked, short = [], []
    for c in np.unique(labels):
        pool = np.flatnonzero((labels == c) & ~banned)
        rng = np.random.default_rng([seed, int(c)])
        if len(pool) < shots:
            short.append((classnames[c] if classnames is not None else str(c), len(pool)))
            picked.append(pool)
        else:
            picked.append(rng.choice(pool, size=shots, replace=False))
    if short:
        logging.warning("%d classes have fewer than %d examples (kept all): %s", len(short), shots,
                        ", ".join(f"{name} ({n})" for name, n in short))
    return np.sort(np.concatenate(picked)).astype(np.int64)


def validation_shots(shots: int) -> int:
    """CoOp's validation size per class: min(K, 4)."""
    return min(shots, 4)


def base_novel_split(num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes sorted by id; the first ceil(n/2) are base, the rest novel."""
    if num_classes < 2:
        raise ValueError(f"a base/novel split needs >= 2 classes, got {num_classes}")
    m = math.ceil(num_classes / 2)
    return np.arange(m), np.arange(m, num_classes)


def label_lookup(class_ids, num_classes: int) -> np.ndarray:
    """(num_classes,) old label -> new label (its position in class_ids), -1 if dropped."""
    lookup = np.full(num_classes, -1, np.int64)
    lookup[np.asarray(class_ids)] = np.arange(len(class_ids))
    return lookup


def relabel(labels, class_ids) -> tuple[np.ndarray, np.ndarray]:
    """(indices of examples whose label is in class_ids, their labels renumbered 0..len-1
    in the order of class_ids)."""
    labels = np.asarray(labels)
    class_ids = np.asarray(class_ids)
    lookup = label_lookup(class_ids, max(int(labels.max(initial=0)),
                                         int(class_ids.max(initial=0))) + 1)
    keep = np.flatnonzero(lookup[labels] >= 0)
    return keep, lookup[labels[keep]]


def record_draw(path: str, **draws) -> None:
    """Write the drawn indices (and anything else JSON-able) to `path` in the run directory."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    payload = {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v)
               for k, v in draws.items()}
    with open(path, "w") as f:
        json.dump(payload, f)
