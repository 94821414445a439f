"""Your own data: a folder of class folders, a file list, a CoOp split file, any TFDS dataset.

    data.dataset = "folder:PATH"   PATH/<class>/**/<image>, or pre-made PATH/{train,val,test}/<class>
    data.dataset = "list:FILE"     a .csv/.tsv (header: path, class[, split]), a .jsonl of
                                   {"path", "class"[, "split"]} rows, or a CoOp split_zhou_*.json
                                   ({split: [[path, label, class name], ...]}); paths relative
                                   to FILE's folder
    data.dataset = "tfds:NAME[/CONFIG]"  a prepared TFDS image-classification dataset (class
                                   names from its ClassLabel; splits train/validation/test or
                                   data.tfds_splits="train=train[:80%],test=train[80%:]")

`load` reads and checks everything (names, files, classes, splits) and writes nothing; the
result is a `Table`: the class names, and per split the (path, label) rows. Classes are
sorted by folder (or class) name, so labels and CoOp's base/novel halves follow that order.
A folder or list without splits is split per class, seeded, in CoOp's proportions
(`read_and_split_data` in KaiyangZhou/CoOp `datasets/dtd.py` L54-95: 50% train, 20% val, the
rest test, each class shuffled); the job writes that split into the run directory in CoOp's
format (`to_coop`), and `data.split_file` passes such a file back. Nothing is ever written
into the data folder.

Class names: a folder's name with "_" and "-" as spaces, or what `PATH/classnames.txt` maps it
to: one line per folder, `folder<TAB>name` (or `folder name...` split at the first space, as
CoOp's ImageNet classnames.txt). Two classes whose names coincide after that (case ignored,
as CLIP's tokenizer lowercases) are refused: their prompts would be the same.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import functools
import hashlib
import json
import os
import random
import re

import numpy as np
from absl import logging

from adaring_jax.data import file_digests, prompts, upstream
from adaring_jax.data.source import DataError

PREFIXES = ("folder:", "list:", "tfds:")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
SPLITS = ("train", "val", "test")
SPLIT_SEED = 1  # the seed of a split made here: the same split for every run seed
PROPORTIONS = (0.5, 0.2)  # train, val; test gets the rest (CoOp's read_and_split_data)
_NOT_DATA = {"thumbs.db", "desktop.ini"}
_SHOW = 5  # names shown in an error before "... (N in all)"


@dataclasses.dataclass
class Table:
    """A task's images: class names by label and, per split, (path, label) rows with paths
    relative to `root`."""
    kind: str  # "folder" or "list"
    root: str
    classnames: list[str]
    rows: dict[str, list[tuple[str, int]]]
    provenance: str  # where the split came from
    made: bool = False  # the split was made here (the job records it)
    skipped_files: int = 0  # non-image files left out of a folder

    def coop(self) -> dict:
        """The split in CoOp's split_zhou_*.json format."""
        return {s: [[p, int(y), self.classnames[y]] for p, y in rows]
                for s, rows in self.rows.items()}

    def digest(self) -> str:
        """sha256 of the split (names, labels, splits): part of a run's identity."""
        text = json.dumps({"classnames": self.classnames, **self.coop()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @functools.cached_property
    def images(self) -> dict[str, list[str]]:
        """{path: [class name, content digest]} of every image of the split, computed once
        (`file_digests`: read only where a file's size or modification time changed)."""
        classes = {p: self.classnames[y] for rows in self.rows.values() for p, y in rows}
        found = file_digests.digests(self.root, classes)
        return {p: [classes[p], found[p]] for p in sorted(classes)}

    def identity(self) -> dict[str, str]:
        """The run identity's data fields: the split, and what the images are (their bytes),
        so that a folder whose images changed is another experiment."""
        text = json.dumps(self.images, sort_keys=True)
        return {"data.split": self.digest(),
                "data.images": hashlib.sha256(text.encode()).hexdigest()}

    def record(self) -> dict:
        """What a run records of its images (`outputs.IMAGES_RECORD`): enough to say later
        what changed (`changes`)."""
        return {"kind": self.kind, "root": self.root, "images": self.images}

    def changes(self, recorded: dict) -> str:
        """What changed since `recorded` (a `record()`), in words."""
        return file_digests.describe_changes(recorded.get("images", {}), self.images,
                                             self.kind)

    def split_file_name(self) -> str:
        """The name the job gives the split it records: CoOp's pattern, after the data."""
        stem = re.sub(r"[^\w.-]+", "_", os.path.basename(os.path.normpath(self.root)) or "data")
        return f"split_zhou_{stem}.json"


def is_own(dataset: str) -> bool:
    return dataset.startswith(PREFIXES)


def _shown(names) -> str:
    names = list(names)
    more = f", ... ({len(names)} in all)" if len(names) > _SHOW else ""
    return ", ".join(map(repr, names[:_SHOW])) + more


def check_utf8(names, where: str) -> None:
    bad = []
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(name)
    if bad:
        raise DataError(f"{where}: {len(bad)} file or folder names are not valid UTF-8 "
                        f"({_shown(b.encode('utf-8', 'surrogateescape') for b in bad)}); "
                        "rename them (e.g. with convmv): they can be neither printed nor "
                        "recorded")


def class_name(folder: str) -> str:
    """A folder's class name: "_" and "-" become spaces, runs of spaces one."""
    return " ".join(re.sub(r"[_-]", " ", folder).split())


def _check_distinct(classnames: list[str], keys: list[str], where: str) -> None:
    seen: dict[str, str] = {}
    for name, key in zip(classnames, keys):
        folded = prompts.prompt_key(name)
        if folded in seen:
            raise DataError(f"{where}: classes {seen[folded]!r} and {key!r} both get the class "
                            f"name {name!r} (names are compared with '_' as spaces and case "
                            "ignored); rename one, or name them in classnames.txt")
        seen[folded] = key


def _read_classnames(path: str) -> dict[str, str]:
    out = {}
    try:
        with open(path, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\n\r")
                if not line.strip() or line.startswith("#"):
                    continue
                folder, _, name = line.partition("\t") if "\t" in line else line.partition(" ")
                if not name.strip():
                    raise DataError(f"{path} line {n}: expected 'folder<TAB>class name', got "
                                    f"{line!r}")
                out[folder.strip()] = name.strip()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    return out


def _subfolders(path: str) -> list[str]:
    """Visible subfolders of `path`, sorted."""
    try:
        entries = list(os.scandir(path))
    except OSError as e:
        raise DataError(f"cannot list {path}: {e}") from e
    return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _images(class_dir: str) -> tuple[list[str], int, list[str]]:
    """(image files below `class_dir`, relative to it, sorted; non-image files; all names
    seen), hidden files and folders skipped."""
    found, skipped, names = [], 0, []
    for top, dirs, files in os.walk(class_dir, onerror=_raise):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(top, class_dir)
        names.extend(dirs)
        for f in files:
            if f.startswith(".") or f.lower() in _NOT_DATA:
                continue
            names.append(f)
            if f.lower().endswith(IMAGE_EXTENSIONS):
                found.append(f if rel == "." else os.path.join(rel, f))
            else:
                skipped += 1
    return sorted(found), skipped, names


def _raise(error: OSError):
    raise DataError(f"cannot list {error.filename}: {error.strerror}")


def _class_folders(base: str, names: dict[str, str], where: str):
    """[(folder, class name)] of `base`, sorted by folder."""
    folders = _subfolders(base)
    check_utf8(folders, where)
    return [(d, names.get(d, class_name(d))) for d in folders]


def _list_folder(base: str, folders, where: str) -> tuple[dict[str, list[str]], int]:
    """{folder: image paths relative to `base`}, and the count of non-image files."""
    out, skipped = {}, 0
    for folder, _ in folders:
        files, n, seen = _images(os.path.join(base, folder))
        check_utf8(seen, f"{where}/{folder}")
        out[folder] = [os.path.join(folder, f) for f in files]
        skipped += n
    empty = [f for f, files in out.items() if not files]
    if empty:
        raise DataError(f"{where}: class folders without images: {_shown(empty)} (images: "
                        f"{', '.join(e[1:] for e in IMAGE_EXTENSIONS)}); remove them or add "
                        "images")
    return out, skipped


def split_rows(per_class: list[list[str]], seed: int = SPLIT_SEED,
               classnames=None) -> dict[str, list[tuple[str, int]]]:
    """CoOp's per-class split (`datasets/dtd.py` L76-93): each class's files shuffled, the
    first round(50%) train, the next round(20%) val, the rest test."""
    rng = random.Random(seed)
    rows = {s: [] for s in SPLITS}
    small = []
    for label, files in enumerate(per_class):
        files = list(files)
        rng.shuffle(files)
        n = len(files)
        n_train, n_val = round(n * PROPORTIONS[0]), round(n * PROPORTIONS[1])
        if min(n_train, n_val, n - n_train - n_val) < 1:
            small.append(f"{classnames[label] if classnames else label} ({n})")
        rows["train"] += [(f, label) for f in files[:n_train]]
        rows["val"] += [(f, label) for f in files[n_train:n_train + n_val]]
        rows["test"] += [(f, label) for f in files[n_train + n_val:]]
    if small:
        raise DataError(f"{len(small)} classes have too few images to split into train, val "
                        f"and test (at least 4 each; 50/20/30 as CoOp): {_shown(small)}; add "
                        "images, or give the splits (train/val/test folders, a split column, "
                        "or data.split_file)")
    return rows


def _check_splits(rows: dict, classnames: list[str], where: str) -> None:
    if not rows.get("train") or not rows.get("test"):
        raise DataError(f"{where}: needs a train and a test split with images (has "
                        f"{', '.join(s for s in SPLITS if rows.get(s)) or 'none'})")
    present = {s: {y for _, y in r} for s, r in rows.items() if r}
    every = set(range(len(classnames)))
    for split in ("train", "test"):
        missing = every - present[split]
        if missing:
            raise DataError(f"{where}: classes {_shown(classnames[y] for y in sorted(missing))} "
                            f"have no images in the {split} split; every class needs images in "
                            "train and test")
    if len(classnames) < 2:
        raise DataError(f"{where}: {len(classnames)} class; a classifier needs at least 2")


def _distinct_rows(entries: list[tuple], where: str) -> list[tuple]:
    """(path, class, split) rows with repeated rows collapsed (with one warning giving the
    count); a path under two classes, or in two splits, refused by name."""
    seen: dict[str, tuple] = {}
    repeated = 0
    for row in entries:
        first = seen.setdefault(row[0], row)
        if first is not row:
            if first == row:
                repeated += 1
                continue
            what = "classes" if first[1] != row[1] else "splits"
            both = (first[1], row[1]) if what == "classes" else (first[2], row[2])
            raise DataError(f"{where}: {row[0]!r} is listed under two {what}, {both[0]!r} and "
                            f"{both[1]!r}; an image has one class and one split: keep one row")
    if repeated:
        logging.warning("%s: %d repeated rows collapsed (each image is used once)", where,
                        repeated)
    return list(seen.values())


def _check_inside(root: str, paths, where: str, allow_outside: bool) -> None:
    """Refuse paths that leave `root` (absolute, or `..` above it) unless allowed."""
    if allow_outside:
        return
    outside = [p for p in paths if os.path.isabs(p)
               or os.path.normpath(p).split(os.sep)[0] == os.pardir]  # as written: links are
    # followed (a folder of links to a shared copy is inside)
    if outside:
        raise DataError(f"{where}: {len(outside)} paths lead outside its folder {root} "
                        f"({_shown(outside)}); paths are relative to it. Move the list next to "
                        "the images, or set --config.data.allow_outside=True to read them")


def _from_split_file(path: str, root: str, classnames: list[str], known: set[str] | None,
                     where: str, allow_outside: bool = False) -> dict[str, list[tuple[str, int]]]:
    """The rows of a CoOp split file checked against a folder's classes and files."""
    table = upstream.read_split_file(path)
    unknown = set(table) - set(SPLITS)
    if unknown:
        raise DataError(f"{path}: unknown splits {sorted(unknown)}; a CoOp split file has "
                        f"{', '.join(SPLITS)}")
    names = upstream.split_classnames(table, path)
    if names != classnames:
        raise DataError(f"{path} does not fit {where}: its classes by label are "
                        f"{_shown(names)}, the folder's {_shown(classnames)}")
    rows = {s: [] for s in SPLITS}
    missing = []
    for split, part in table.items():
        for row in part:
            rel = row[0] if isinstance(row, (list, tuple)) and row and isinstance(row[0], str) \
                else None
            if rel is None:
                raise DataError(f"{path}: rows must be [relative path, label, class name], got "
                                f"{row!r}")
            rel = os.path.normpath(rel)
            if (known is not None and rel not in known) or (
                    known is None and not os.path.isfile(os.path.join(root, rel))):
                missing.append(rel)
            rows[split].append((rel, int(row[1])))
    if known is None:
        _check_inside(root, [r for part in rows.values() for r, _ in part], where,
                      allow_outside)
    if missing:
        hint = (f"; if a run recorded this split, pass the data as the dataset and this file "
                f"as --config.data.split_file={path}" if known is None else "")
        raise DataError(f"{path} does not fit {where}: {len(missing)} of its images are not "
                        f"there ({_shown(missing)}){hint}")
    entries = _distinct_rows([(r, y, split) for split, part in rows.items()
                              for r, y in part], f"{where} ({path})")
    return {split: [(r, y) for r, y, sp in entries if sp == split] for split in SPLITS}


def _folder(root: str, split_file: str) -> Table:
    where = f"folder {root}"
    if not os.path.isdir(root):
        raise DataError(f"dataset folder:{root}: no such folder (give a folder of class "
                        "folders, dataset=folder:PATH)")
    names_path = os.path.join(root, "classnames.txt")
    mapping = _read_classnames(names_path) if os.path.exists(names_path) else {}
    top = _subfolders(root)
    premade = [s for s in SPLITS if s in top]
    if premade and not split_file:
        if "train" not in premade or "test" not in premade:
            raise DataError(f"{where} has {', '.join(premade)} folders but not both train and "
                            "test: give train/ and test/ (val/ optional), or no split folders")
        per_split = {}
        classes = None
        skipped = 0
        for split in premade:
            folders = _class_folders(os.path.join(root, split), mapping, f"{where}/{split}")
            if classes is None:
                classes = folders
            elif [f for f, _ in folders] != [f for f, _ in classes]:
                a, b = {f for f, _ in classes}, {f for f, _ in folders}
                raise DataError(f"{where}: the {split} split's classes differ from train's: "
                                f"only in train {_shown(sorted(a - b))}, only in {split} "
                                f"{_shown(sorted(b - a))}")
            per_split[split], n = _list_folder(os.path.join(root, split), folders,
                                               f"{where}/{split}")
            skipped += n
        classnames = [n for _, n in classes]
        _check_distinct(classnames, [f for f, _ in classes], where)
        rows = {s: [(os.path.join(s, p), y) for y, (f, _) in enumerate(classes)
                    for p in per_split[s][f]] for s in premade}
        table = Table("folder", root, classnames, rows, f"the split folders of {root}",
                      skipped_files=skipped)
    else:
        folders = [(f, n) for f, n in _class_folders(root, mapping, where)]
        if len(folders) < 2:
            raise DataError(f"{where} has {len(folders)} class folders; give at least 2 "
                            "(PATH/<class>/<images>)")
        classnames = [n for _, n in folders]
        _check_distinct(classnames, [f for f, _ in folders], where)
        files, skipped = _list_folder(root, folders, where)
        if split_file:
            known = {p for ps in files.values() for p in ps}
            rows = _from_split_file(split_file, root, classnames, known, where)
            table = Table("folder", root, classnames, rows, f"split file {split_file}",
                          skipped_files=skipped)
        else:
            rows = split_rows([files[f] for f, _ in folders], classnames=classnames)
            table = Table("folder", root, classnames, rows,
                          f"split made here (seed {SPLIT_SEED}, CoOp's 50/20/30)", made=True,
                          skipped_files=skipped)
    if skipped:
        logging.warning("%s: %d files that are not images were left out", where, skipped)
    _check_splits(table.rows, table.classnames, where)
    return table


_COLUMNS = {"path": ("path", "image", "file", "filename"),
            "class": ("class", "classname", "label", "category"),
            "split": ("split",)}


def _list_rows(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: Excel's byte-order mark
            if path.lower().endswith(".jsonl"):
                out = []
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except ValueError as e:
                            raise DataError(f"{path} line {n}: not JSON ({e}): "
                                            f"{line.strip()[:200]!r}") from None
                        if not isinstance(row, dict):
                            raise DataError(f"{path} line {n}: expected an object with "
                                            f"'path' and 'class', got {line.strip()[:200]!r}")
                        out.append(row)
                return out
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    dialect = "excel-tab" if path.lower().endswith(".tsv") or "\t" in text.split("\n")[0] \
        else "excel"
    return list(csv.DictReader(text.splitlines(), dialect=dialect))


def _column(row: dict, field: str):
    for key in _COLUMNS[field]:
        for k in row:
            if isinstance(k, str) and k.strip().lower() == key:
                return row[k]
    return None


def _list(path: str, split_file: str, allow_outside: bool = False) -> Table:
    where = f"list {path}"
    if not os.path.isfile(path):
        raise DataError(f"dataset list:{path}: no such file (give a .csv, .tsv, .jsonl or a "
                        "CoOp split_zhou_*.json)")
    root = os.path.dirname(os.path.abspath(path))
    if os.path.isfile(os.path.join(root, "experiment.json")):  # outputs.RUN_MARK
        raise DataError(f"dataset list:{path} is in a run directory: a split a run recorded "
                        "names its images relative to the data it was made from, not to the "
                        "run. Pass the data again and this file as the split: dataset=folder:"
                        f"DATA (or list:FILE) --config.data.split_file={path}")
    if path.lower().endswith(".json"):  # a CoOp split file, used as is
        table = upstream.read_split_file(path)
        classnames = upstream.split_classnames(table, path)
        _check_distinct(classnames, classnames, where)
        rows = _from_split_file(path, root, classnames, None, where, allow_outside)
        out = Table("list", root, classnames, rows, f"CoOp split file {path}")
        _check_splits(out.rows, classnames, where)
        return out
    raw = _list_rows(path)
    if not raw:
        raise DataError(f"{where} has no rows (a header 'path,class[,split]' and one row per "
                        "image)")
    entries = []
    for n, row in enumerate(raw, 2 if not path.lower().endswith(".jsonl") else 1):
        p, c, s = _column(row, "path"), _column(row, "class"), _column(row, "split")
        if not isinstance(p, str) or not p.strip() or c is None or not str(c).strip():
            raise DataError(f"{where} row {n}: needs a path and a class (columns "
                            f"{', '.join(_COLUMNS['path'][:1] + _COLUMNS['class'][:1])}"
                            f"[, split]), got {row!r}")
        s = None if s is None or not str(s).strip() else str(s).strip().lower()
        s = {"validation": "val", "valid": "val"}.get(s, s)
        if s is not None and s not in SPLITS:
            raise DataError(f"{where} row {n}: split {s!r} is not one of {', '.join(SPLITS)}")
        entries.append((os.path.normpath(p.strip()), " ".join(str(c).split()), s))
    entries = _distinct_rows(entries, where)
    _check_inside(root, [p for p, _, _ in entries], where, allow_outside)
    missing = [p for p, _, _ in entries if not os.path.isfile(os.path.join(root, p))]
    if missing:
        raise DataError(f"{where}: {len(missing)} of its {len(entries)} images are missing "
                        f"({_shown(missing)}; paths are relative to {root})")
    classnames = sorted({c for _, c, _ in entries})
    _check_distinct(classnames, classnames, where)
    label = {c: i for i, c in enumerate(classnames)}
    with_split = [s is not None for _, _, s in entries]
    if any(with_split) and not all(with_split):
        raise DataError(f"{where}: {with_split.count(False)} rows have no split; give every "
                        "row a split, or none")
    if split_file:
        rows = _from_split_file(split_file, root, classnames, {p for p, _, _ in entries}, where)
        out = Table("list", root, classnames, rows, f"split file {split_file}")
    elif all(with_split):
        rows = {s: [(p, label[c]) for p, c, sp in entries if sp == s] for s in SPLITS}
        out = Table("list", root, classnames, rows, f"the split column of {path}")
    else:
        per_class = [[p for p, c, _ in entries if c == name] for name in classnames]
        rows = split_rows(per_class, classnames=classnames)
        out = Table("list", root, classnames, rows,
                    f"split made here (seed {SPLIT_SEED}, CoOp's 50/20/30)", made=True)
    _check_splits(out.rows, classnames, where)
    return out


def load(dataset: str, split_file: str = "", data_dir: str = "", tfds_splits: str = "",
         classnames_file: str = "", template: str = "a photo of a {}.",
         allow_outside: bool = False):
    """The checked table of an own dataset (`folder:PATH`, `list:FILE`, `tfds:NAME`); reads
    the data, writes nothing. A list's paths must stay inside its folder unless
    `allow_outside`."""
    kind, _, path = dataset.partition(":")
    if not path:
        raise DataError(f"dataset {dataset!r}: give a path after '{kind}:'")
    if kind == "tfds":
        return _tfds(dataset, data_dir, tfds_splits, classnames_file, template)
    if split_file and not os.path.isfile(split_file):
        raise DataError(f"data.split_file={split_file!r}: no such file")
    return _folder(path, split_file) if kind == "folder" else _list(path, split_file,
                                                                     allow_outside)


def source(table, split: str, template: str):
    """A random-access source of one split of `table`, prompting with `template`."""
    if isinstance(table, TfdsTable):
        if split not in table.sources:
            raise DataError(f"TFDS {table.name} has no {split} split here")
        src = table.sources[split]
        src.template = template
        return src
    from adaring_jax.data.sources import FolderSource  # noqa: PLC0415 - sources imports presets
    src = FolderSource(table.root, table.rows.get(split, []), table.classnames, template,
                       table.root, f"{table.kind}: {table.provenance}")
    src.comparable = None  # nothing published to compare with
    return src


# ---------------------------------------------------------------------------------------------
# Any TFDS image-classification dataset: tfds:NAME[/CONFIG]

_WORDNET = re.compile(r"^n\d{8}$")


@dataclasses.dataclass
class TfdsTable:
    """A TFDS dataset's splits, opened (labels read, no image decoded)."""
    name: str
    sources: dict  # split -> tfds_source.TfdsSource
    classnames: list[str]
    provenance: str
    made: bool = False
    skipped_files: int = 0

    def digest(self) -> str:
        h = hashlib.sha256(json.dumps([self.name, self.classnames]).encode())
        for split in sorted(self.sources):
            h.update(split.encode())
            h.update(np.asarray(self.sources[split].labels(), np.int64).tobytes())
        return h.hexdigest()

    def coop(self) -> None:
        return None  # TFDS records have no paths to write a CoOp split with

    def identity(self) -> dict[str, str]:
        """The run identity's data field: the class names and every split's labels."""
        return {"data.split": self.digest()}


def parse_tfds_splits(spec: str) -> dict[str, str]:
    """'train=train[:80%],test=train[80%:]' -> {"train": "train[:80%]", "test": ...}."""
    out = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        split, _, tfds_split = item.partition("=")
        if split not in SPLITS or not tfds_split:
            raise DataError(f"data.tfds_splits={spec!r}: give split=TFDS split pairs with "
                            f"split one of {', '.join(SPLITS)}, e.g. "
                            "train=train[:80%],test=train[80%:]")
        out[split] = tfds_split
    return out


def _tfds(dataset: str, data_dir: str, splits_spec: str, classnames_file: str,
          template: str) -> TfdsTable:
    import tensorflow_datasets as tfds  # noqa: PLC0415 - only tfds: datasets need it
    from adaring_jax.data import presets, tfds_source  # noqa: PLC0415
    name = dataset.partition(":")[2]
    where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    try:
        info = tfds.builder(name, data_dir=data_dir or None).info
        available = set(info.splits.keys())
        label = info.features["label"]
        names = list(label.names)
    except Exception as e:  # noqa: BLE001 - TFDS raises many types for an unknown/unbuilt set
        raise DataError(
            f"TFDS dataset {name!r} is not prepared under {where} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); prepare it with `tfds build "
            f"{name.split('/')[0]} --file_format=array_record"
            f"{' --data_dir=' + data_dir if data_dir else ''}` (or pass "
            "--config.data.data_dir=DIR where it is)") from None
    if not hasattr(label, "names") or not names:
        raise DataError(f"TFDS dataset {name!r} has no ClassLabel feature 'label': not an "
                        "image-classification dataset")
    if classnames_file:
        mapping = _read_classnames(classnames_file)
        names = [mapping.get(n, n) for n in names]
    wordnet = [n for n in names if _WORDNET.match(n)]
    if wordnet:
        raise DataError(f"TFDS dataset {name!r} names its classes by WordNet id ({_shown(wordnet)}"
                        "): prompts need words. Pass --config.data.classnames_file=FILE with "
                        "one 'id<TAB>class name' per line (e.g. CoOp's ImageNet classnames.txt)")
    splits = parse_tfds_splits(splits_spec) if splits_spec else {
        s: t for s, t in (("train", "train"), ("val", "validation"), ("test", "test"))
        if t in available}
    if "train" not in splits or "test" not in splits:
        raise DataError(f"TFDS dataset {name!r} has splits {sorted(available)}; it needs a "
                        "train and a test split: pass them, e.g. "
                        "--config.data.tfds_splits=train=train[:80%],test=train[80%:]")
    preset = presets.DatasetPreset(name=name, template=template, coop_dir="", tfds_name=name,
                                   tfds_splits=tuple(splits.items()), clean=class_name,
                                   tfds_file_key=None)
    sources = {}
    for split in splits:
        src = tfds_source.tfds_split(preset, split, data_dir or None, None, None)
        src.classnames = [class_name(n) for n in names]
        src.provenance, src.comparable = f"TFDS {name} split {splits[split]!r}", None
        sources[split] = src
    classnames = sources["train"].classnames
    _check_distinct(classnames, names, f"TFDS {name}")
    for split in ("train", "test"):
        missing = set(range(len(classnames))) - set(np.unique(sources[split].labels()).tolist())
        if missing:
            raise DataError(f"TFDS {name}: classes {_shown(classnames[c] for c in sorted(missing))}"
                            f" have no images in the {split} split ({splits[split]!r})")
    return TfdsTable(name, sources, classnames, f"TFDS {name} ({splits})")
