"""Random-access sources for the presets: CoOp-layout folders, TFDS, and the `shapes` world.

`open_split(name, split, data_dir)` picks, in order: a CoOp-layout folder under `data_dir`
(its split file wins, so numbers are comparable with published ones), then TFDS records with
CoOp's split file applied by file name (`tfds_source`), then TFDS's own splits (not
comparable), and fails with a message saying where it looked and how to prepare the data.
Every source says where its items come from (`provenance`) and whether they are the ones the
published tables used (`comparable`).
"""

from __future__ import annotations

import os

import numpy as np

from adaring_jax.data import images, presets, tfds_source, upstream
from adaring_jax.data.presets import DatasetPreset
from adaring_jax.data.source import DataError

SPLITS = ("train", "val", "test")


class FolderSource:
    """Images listed as (relative path, label) under `image_dir`."""

    def __init__(self, image_dir: str, items, classnames, template: str, dataset_dir: str,
                 provenance: str, upstream_order: bool = True):
        self.image_dir = image_dir
        self.paths = [p for p, _ in items]
        self._labels = np.asarray([l for _, l in items], np.int64)
        self.classnames = list(classnames)
        self.template = template
        self.dataset_dir = dataset_dir  # where upstream caches for this dataset may be
        self.provenance, self.comparable = provenance, True
        self.upstream_order = upstream_order  # items in the order upstream lists them
        self.bad = images.BadImages()

    def __len__(self):
        return len(self.paths)

    def labels(self):
        return self._labels

    def __getitem__(self, i):
        path = os.path.join(self.image_dir, self.paths[i])
        image, valid = images.decode(path, path, self.bad)
        return {"image": image, "label": int(self._labels[i]), "valid": valid}

    def reorder(self, order) -> None:
        """Serve the items in `order` (indices into the current order)."""
        self.paths = [self.paths[i] for i in order]
        self._labels = self._labels[np.asarray(order, np.int64)]


# ---------------------------------------------------------------------------------------------
# CoOp folders

# Names that are never images of a dataset: hidden files (Dassl's `listdir_nohidden`,
# `dassl/utils/tools.py` L135-145), OS thumbnail caches, and the README.txt that ImageNet-A and
# -R ship beside their class folders (MMA `datasets/imagenet_a.py` L8 and L34-35).
_NOT_DATA = {"thumbs.db", "desktop.ini", "readme.txt"}


def _listdir(path: str, dirs: bool) -> list[str]:
    """Sorted visible subfolders (dirs=True) or files of `path`."""
    try:
        entries = list(os.scandir(path))
    except OSError as e:
        raise DataError(f"cannot list {path}: {e}") from e
    return sorted(e.name for e in entries if not e.name.startswith(".")
                  and e.name.lower() not in _NOT_DATA and (e.is_dir() if dirs else e.is_file()))


def _read_classnames_txt(path: str) -> dict[str, str]:
    """CoOp's ImageNet classnames.txt: 'n01440764 tench' per line."""
    out = {}
    with open(path) as f:
        for line in f:
            wnid, _, name = line.strip().partition(" ")
            if wnid:
                out[wnid] = name
    return out


def _coop_split(preset: DatasetPreset, root: str, split: str, path: str,
                table: dict) -> FolderSource:
    if split not in table:
        raise DataError(f"{path} has no {split!r} split (has {sorted(table)})")
    classnames = upstream.split_classnames(table, path)
    items = [(rel, int(label)) for rel, label, _ in table[split]]
    return FolderSource(os.path.join(root, preset.image_dir), items, classnames, preset.template,
                        root, f"CoOp split file {path}")


def _aircraft_split(preset: DatasetPreset, root: str, split: str) -> FolderSource:
    """FGVC-Aircraft's official files: variants.txt and images_variant_{train,val,test}.txt
    (what CoOp's `datasets/fgvc_aircraft.py` reads, in their line order)."""
    try:
        with open(os.path.join(root, "variants.txt")) as f:
            classnames = [line.strip() for line in f if line.strip()]
        with open(os.path.join(root, f"images_variant_{split}.txt")) as f:
            rows = [line.strip().split(" ", 1) for line in f if line.strip()]
    except OSError as e:
        raise DataError(f"FGVC-Aircraft folder {root} lacks its official split files "
                        f"(variants.txt, images_variant_{split}.txt): {e}") from e
    index = {n: i for i, n in enumerate(classnames)}
    items = [(f"{image}.jpg", index[variant]) for image, variant in rows]
    return FolderSource(os.path.join(root, preset.image_dir), items, classnames, preset.template,
                        root, f"FGVC-Aircraft's official variant split files in {root}")


def _imagenet_folder(preset: DatasetPreset, root: str, split: str) -> FolderSource:
    """ImageNet-style folders of wnid subdirectories, named by classnames.txt. Labels follow
    sorted wnids (upstream: sorted folders); files within a class are sorted here, while
    upstream lists them unsorted, so ImageNet's train order is upstream's only when its
    `preprocessed.pkl` is in the folder (it then orders the items)."""
    names_path = os.path.join(root, "classnames.txt")
    if not os.path.exists(names_path):
        raise DataError(f"{names_path} not found: ImageNet-family folders need CoOp's "
                        "classnames.txt (one 'wnid name' per line) beside the images")
    wnids = _read_classnames_txt(names_path)
    order = sorted(wnids)
    base = os.path.join(root, preset.image_dir)
    if preset.name == "imagenet":
        base = os.path.join(base, "train" if split == "train" else "val")
    folders = _listdir(base, dirs=True)
    if preset.name == "imagenetv2":  # folders are ImageNet label indices 0..999
        folder_class = {d: int(d) for d in folders if d.isdigit()}
    else:
        unknown = [d for d in folders if d not in wnids]
        if unknown:
            raise DataError(f"{base} has folders not in {names_path}: {unknown[:5]}")
        position = {w: i for i, w in enumerate(order)}
        folder_class = {d: position[d] for d in folders}
    present = sorted(set(folder_class.values()))
    classes = present if preset.subset else list(range(len(order)))
    remap = {c: i for i, c in enumerate(classes)}
    items = []
    for d in folders:
        if d in folder_class:
            for f in _listdir(os.path.join(base, d), dirs=False):
                items.append((os.path.join(d, f), remap[folder_class[d]]))
    source = FolderSource(base, items, [wnids[order[c]] for c in classes], preset.template,
                          root, f"ImageNet-layout folders in {base}",
                          upstream_order=preset.name != "imagenet" or split != "train")
    if not source.upstream_order:
        _upstream_order(source, os.path.join(root, "preprocessed.pkl"))
    return source


def _upstream_order(source, path: str) -> None:
    """Put ImageNet's train items in the order of upstream's `preprocessed.pkl`, if present
    (MMA `datasets/imagenet.py` L24-39: the whole split as upstream listed it)."""
    if not os.path.exists(path):
        return
    table = upstream.load_pickle(path, ("train",))
    order = upstream.match_paths([d.impath for d in table["train"]], source.paths, path)
    if len(order) != len(source) or len(set(order.tolist())) != len(source):
        raise DataError(f"{path} lists {len(order)} training images, this copy has "
                        f"{len(source)}: it belongs to another copy of ImageNet")
    source.reorder(order)
    source.upstream_order = True


# ---------------------------------------------------------------------------------------------


def open_split(name: str, split: str, data_dir: str | None = None, split_dir: str | None = None,
               **shapes_kwargs):
    """The random-access source of one split ('train', 'val' or 'test') of a dataset.

    `split_dir` (default: `data_dir`) holds CoOp's dataset folders with their split files and
    upstream few-shot caches for runs whose images come from TFDS (e.g. on GCS).
    """
    preset = presets.get(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if presets.is_shapes(preset.name):
        split = {"val": "validation"}.get(split, split)
        if preset.name == "shapes":
            from adaring_jax.data import shapes
            return shapes.ShapesSource(split=split, **shapes_kwargs)
        from adaring_jax.data import shapes_suite
        return shapes_suite.SuiteSource(preset.name, split=split, **shapes_kwargs)
    root = os.path.join(data_dir, preset.coop_dir) if data_dir else None
    meta_root = os.path.join(split_dir or data_dir, preset.coop_dir) if split_dir or data_dir \
        else None
    if preset.wordnet_ids and root and os.path.isdir(os.path.join(root, preset.image_dir)):
        return _imagenet_folder(preset, root, split)
    if root and os.path.isdir(root) and preset.name == "fgvc_aircraft":
        return _aircraft_split(preset, root, split)
    if preset.split_file:
        for folder in dict.fromkeys(r for r in (root, meta_root) if r):
            path = os.path.join(folder, preset.split_file)
            if not os.path.exists(path):
                continue
            table = upstream.read_split_file(path)
            image_root = os.path.join(folder, preset.image_dir)
            # The folder holds the images if any of the first rows is there (a missing image
            # is then unreadable and counted, not taken as the whole folder's absence).
            sample = [row[0] for rows in table.values() for row in rows[:20]
                      if isinstance(row, (list, tuple)) and row and isinstance(row[0], str)]
            if any(os.path.exists(os.path.join(image_root, rel)) for rel in sample):
                return _coop_split(preset, folder, split, path, table)
            if preset.tfds_name is None:
                raise DataError(f"{path} is there but its images are not: none of its first "
                                f"rows ({sample[:1]!r} ...) is under {image_root}; put CoOp's "
                                f"{name} images there")
            return tfds_source.tfds_coop_split(preset, split, data_dir, path, table)
    if root and os.path.isdir(root) and not preset.wordnet_ids:
        raise DataError(f"{root} exists but has no {preset.split_file}: download CoOp's split "
                        "file for this dataset into it")
    if preset.tfds_name is None:
        raise DataError(f"dataset {name!r} is not in TFDS and no CoOp folder was found at "
                        f"{root or '<data_dir>/' + preset.coop_dir} (pass --config.data.data_dir)"
                        f"; it needs {preset.split_file or 'its official split files'} there")
    imagenet_names = None
    if preset.wordnet_ids:  # the set's own classnames.txt, else ImageNet's
        for top in dict.fromkeys(r for r in (split_dir, data_dir) if r):
            for folder in (preset.coop_dir, "imagenet"):
                path = os.path.join(top, folder, "classnames.txt")
                if imagenet_names is None and os.path.exists(path):
                    imagenet_names = _read_classnames_txt(path)
    source = tfds_source.tfds_split(preset, split, data_dir, imagenet_names, meta_root)
    if preset.name == "imagenet" and split == "train" and meta_root:
        _upstream_order(source, os.path.join(meta_root, "preprocessed.pkl"))
    return source
