"""CoOp/Dassl's data handling, image for image: the few-shot draw, its cache, safe pickles.

The published base-to-novel, few-shot and transfer tables come from Dassl.pytorch-based
trainers (CoOp, CoCoOp, MMA, PromptSRC). What they do, read from their code:
- Few-shot draw: the run seeds Python's `random` (Dassl `dassl/utils/tools.py`
  `set_random_seed`, L73-77; MMA `train.py` L125-127) before the dataset is built; the dataset
  then calls `generate_fewshot_dataset(train, num_shots=K)` (Dassl
  `dassl/data/datasets/base_dataset.py` L167-209), which groups the split by label in order of
  first appearance (`split_dataset_by_label`, L211-223) and takes `random.sample(items, K)` per
  group, keeping every item of a group smaller than K. The validation draw
  (`min(K, 4)` per class) follows from the same generator, after the training draw.
- Cache: the draw is pickled to `<dataset folder>/split_fewshot/shot_{K}-seed_{S}.pkl` as
  `{"train": [Datum, ...], "val": [...]}` and read back instead of drawing when present
  (MMA `datasets/oxford_pets.py` L33-49, `datasets/imagenet.py` L41-56). For ImageNet, whose
  file order upstream comes from an unsorted `os.listdir` (`datasets/imagenet.py` L84), the
  cache (or `preprocessed.pkl`, the whole split in upstream's order) is the only way to get the
  same images.

A pickle from a data folder is untrusted input: `load_pickle` resolves only Dassl's `Datum`
record (to a plain stand-in class here) and builtin container types, and refuses any other
global with a message naming it, so no code in the file can run.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import random

import numpy as np

from adaring_jax.data.source import DataError

DATUM = ("dassl.data.datasets.base_dataset", "Datum")  # where Dassl's record class lives
_SAFE_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int",
                            "float", "bool", "complex"})


def fewshot_draw(labels, shots: int, rng: random.Random) -> np.ndarray:
    """Dassl's `generate_fewshot_dataset` over indices: per label in order of first appearance,
    `rng.sample(members, shots)` (all members when fewer). Indices in the order drawn."""
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(np.asarray(labels).tolist()):
        groups.setdefault(label, []).append(i)
    picked: list[int] = []
    for members in groups.values():
        picked.extend(rng.sample(members, shots) if len(members) >= shots else members)
    return np.asarray(picked, np.int64)


def cache_path(dataset_dir: str, shots: int, seed: int) -> str:
    """Where Dassl-based trainers cache the K-shot draw of seed S."""
    return os.path.join(dataset_dir, "split_fewshot", f"shot_{shots}-seed_{seed}.pkl")


class Datum:
    """Stand-in for Dassl's `Datum` record (impath, label, domain, classname) when unpickling:
    it holds the pickled attributes and runs nothing."""

    def __init__(self, impath="", label=0, domain=0, classname=""):
        self._impath, self._label, self._domain, self._classname = impath, label, domain, classname

    impath = property(lambda self: self._impath)
    label = property(lambda self: self._label)
    classname = property(lambda self: self._classname)


class _Refused(pickle.UnpicklingError):
    """A global outside the allow-list."""


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == DATUM:
            return Datum
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        raise _Refused(f"it refers to {module}.{name}, which is not on the "
                                     f"allow-list ({'.'.join(DATUM)} and builtin types)")


def load_pickle(path: str, keys: tuple[str, ...]) -> dict[str, list[Datum]]:
    """An upstream pickle `{key: [Datum, ...]}`, read with an allow-list; anything else is
    refused with a DataError that names the file and what to do."""
    advice = ("delete or move it to let this run draw the few-shot set itself, or replace it "
              "with the file Dassl wrote")
    try:
        with open(path, "rb") as f:
            table = _AllowListUnpickler(f).load()
    except _Refused as e:
        raise DataError(f"refused to read {path}: {e}. An upstream few-shot cache holds only "
                        f"Dassl Datum records; {advice}") from None
    except Exception as e:  # truncated or not a pickle at all: EOFError, ValueError, ...
        raise DataError(f"cannot read {path} as an upstream pickle ({type(e).__name__}: {e}); "
                        f"{advice}") from None
    ok = isinstance(table, dict) and all(
        isinstance(table.get(k), list) and all(
            isinstance(d, Datum) and isinstance(d.impath, str) and isinstance(d.label, int)
            for d in table[k]) for k in keys)
    if not ok:
        raise DataError(f"refused {path}: not a Dassl pickle of the form "
                        f"{{{', '.join(repr(k) + ': [Datum, ...]' for k in keys)}}}; {advice}")
    return table


def path_parts(path: str) -> tuple[str, ...]:
    """A path's components, "/" or "\\" separated, without empty or "." parts."""
    return tuple(p for p in path.replace("\\", "/").split("/") if p and p != ".")


def match_paths(impaths, paths, where: str) -> np.ndarray:
    """Indices into `paths` (a source's image paths, relative to its image folder) of each
    upstream absolute `impath`, matched on trailing path components (upstream's paths name the
    machine that wrote them). Every impath must match exactly one path."""
    by_depth: dict[int, dict[tuple[str, ...], int]] = {}
    for i, p in enumerate(paths):
        parts = path_parts(p)
        by_depth.setdefault(len(parts), {}).setdefault(parts, i)
    out = np.empty(len(impaths), np.int64)
    missing = []
    for j, impath in enumerate(impaths):
        parts = path_parts(impath)
        hits = {table[parts[-d:]] for d, table in by_depth.items()
                if d <= len(parts) and parts[-d:] in table}
        if len(hits) != 1:
            missing.append(impath)
            continue
        out[j] = hits.pop()
    if missing:
        raise DataError(f"{len(missing)} of {len(impaths)} images in {where} are not in this "
                        f"dataset's split (e.g. {missing[0]!r}): the file was written for "
                        "another copy or version of the dataset")
    return out


def read_split_file(path: str) -> dict:
    """CoOp's split_zhou_*.json: {split: [[relative path, label, class name], ...]}."""
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is accepted
            table = json.load(f)
    except (OSError, ValueError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise DataError(f"cannot read CoOp split file {path}: {e}") from e
    if not isinstance(table, dict) or not all(isinstance(v, list) for v in table.values()):
        raise DataError(f"{path} is not a CoOp split file ({{split: [[path, label, name], ...]}})")
    for split, rows in table.items():
        for n, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str)
                    and isinstance(row[1], int) and not isinstance(row[1], bool) and row[1] >= 0
                    and isinstance(row[2], str)):
                raise DataError(f"{path}: row {n} of {split!r} is {row!r}; rows must be "
                                "[relative path, label (an integer >= 0), class name]")
    return table


def split_classnames(table: dict, path: str) -> list[str]:
    """Class names by label, from every split of a CoOp split file."""
    names: dict[int, str] = {}
    try:
        for part in table.values():
            for _, label, name in part:
                if names.setdefault(int(label), name) != name:
                    raise DataError(f"{path}: label {int(label)} has two class names, "
                                    f"{names[int(label)]!r} and {name!r}; give each label one")
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: rows must be [relative path, label, class name] ({e})") from e
    missing = sorted(set(range(max(names) + 1)) - set(names)) if names else [0]
    if missing:
        raise DataError(f"{path}: labels {missing[:5]} have no rows; labels must be 0..C-1")
    return [names[i] for i in range(len(names))]
