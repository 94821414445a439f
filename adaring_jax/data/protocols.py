"""Evaluation protocols (CoOp/MMA standard): few-shot draws and the base/novel class split.

Every draw is a function of the full label array (or an upstream cache file) and a seed, so
every process of a multi-host job computes the same draw and then reads only its own shard.
"""

from __future__ import annotations

import logging
import math
import os
import random
from typing import Sequence

import numpy as np

from adaring_jax.data import upstream
from adaring_jax.data.source import DataError


def fewshot_indices(labels, shots: int, seed: int,
                    classnames: Sequence[str] | None = None) -> np.ndarray:
    """Dassl's K-shot draw (`upstream.fewshot_draw` with `random.seed(seed)`), image for image;
    sorted indices into `labels`. A class with fewer than `shots` examples keeps all it has
    and is reported by name."""
    labels = np.asarray(labels)
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    counts = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    short = [(classnames[c] if classnames is not None else str(c), int(n))
             for c, n in enumerate(counts) if 0 < n < shots]
    if short:
        logging.warning("%d classes have fewer than %d examples (kept all): %s", len(short), shots,
                        ", ".join(f"{name} ({n})" for name, n in short))
    return np.sort(upstream.fewshot_draw(labels, shots, random.Random(seed)))


def draw_train(source, shots: int, seed: int) -> tuple[np.ndarray, dict]:
    """(sorted K-shot indices into `source`, how they were drawn). An upstream cache
    `split_fewshot/shot_{K}-seed_{S}.pkl` in the dataset's folder wins (Dassl-based trainers
    read it instead of drawing); else Dassl's draw, which equals upstream's when the source
    lists its items in upstream's order."""
    folder = getattr(source, "dataset_dir", None)
    path = upstream.cache_path(folder, shots, seed) if folder else None
    if path and os.path.exists(path):
        table = upstream.load_pickle(path, ("train",))
        records = table["train"]
        if not records:
            raise DataError(f"{path} (an upstream few-shot cache) lists no training images; "
                            "delete it to draw with Dassl's draw, or copy upstream's file again")
        idx = upstream.match_paths([d.impath for d in records], source.paths, path)
        wrong = np.flatnonzero(source.labels()[idx] != np.asarray([d.label for d in records]))
        if len(wrong):
            raise DataError(f"{path}: {len(wrong)} images have other labels than in this "
                            f"dataset's split (e.g. {records[wrong[0]].impath!r}); it was "
                            "written for another split file")
        return np.sort(idx), {"fewshot": f"upstream cache {path}", "fewshot_comparable": True}
    draw = fewshot_indices(source.labels(), shots, seed, source.classnames)
    how = {"fewshot": "Dassl's draw (random.seed(seed); random.sample per class)",
           "fewshot_comparable": bool(getattr(source, "upstream_order", False))}
    if getattr(source, "comparable", None) and not how["fewshot_comparable"]:
        how["fewshot"] += (" over a file order that is not upstream's (an unsorted directory "
                           "listing there): put upstream's "
                           f"{os.path.basename(upstream.cache_path('', shots, seed))} in "
                           f"{os.path.join(folder or '<dataset folder>', 'split_fewshot')} "
                           "or its preprocessed.pkl in the dataset folder to draw the same "
                           "images")
    return draw, how


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
