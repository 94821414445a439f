"""Random-access sources for the presets: CoOp-layout folders, TFDS, and the `shapes` world.

`open_split(name, split, data_dir)` picks, in order: a CoOp-layout folder under `data_dir`
(its split file wins, so numbers are comparable with published ones), then TFDS (prepared in
array_record format, read with `tfds.data_source`), and fails with a message saying where it
looked and how to prepare the data. Images are decoded to RGB uint8 with PIL; grayscale, CMYK,
palette and alpha images are converted, unreadable files are replaced by a black image marked
`valid: False` (the pipeline masks them out) and counted, never raised mid-epoch.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading

import numpy as np
from PIL import Image

from adaring_jax.data import presets
from adaring_jax.data.presets import DatasetPreset

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """A dataset that is unknown, not prepared, or malformed."""


class BadImages:
    """Thread-safe count of images that could not be decoded, logged once per file."""

    def __init__(self):
        self._lock = threading.Lock()
        self.paths: set[str] = set()

    def add(self, path: str, error: Exception):
        with self._lock:
            if path not in self.paths:
                self.paths.add(path)
                logging.warning("skipping unreadable image %s (%s); %d so far", path, error,
                                len(self.paths))

    def __len__(self):
        return len(self.paths)


def decode(data, name: str, bad: BadImages) -> tuple[np.ndarray, bool]:
    """Bytes, path or array -> (uint8 RGB (H, W, 3), valid)."""
    try:
        if isinstance(data, np.ndarray):
            image = Image.fromarray(data.squeeze(-1) if data.ndim == 3 and data.shape[-1] == 1
                                    else data)
        else:
            image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
        image.load()
        if image.mode != "RGB":  # L, P, CMYK, RGBA, I;16 ...
            image = image.convert("RGB")
        return np.asarray(image), True
    except Exception as e:  # PIL raises many types for truncated/corrupt files
        bad.add(name, e)
        return np.zeros((8, 8, 3), np.uint8), False


class FolderSource:
    """Images listed as (relative path, label) under `image_dir`."""

    def __init__(self, image_dir: str, items, classnames, template: str):
        self.image_dir = image_dir
        self.paths = [p for p, _ in items]
        self._labels = np.asarray([l for _, l in items], np.int64)
        self.classnames = list(classnames)
        self.template = template
        self.bad = BadImages()

    def __len__(self):
        return len(self.paths)

    def labels(self):
        return self._labels

    def __getitem__(self, i):
        path = os.path.join(self.image_dir, self.paths[i])
        image, valid = decode(path, path, self.bad)
        return {"image": image, "label": int(self._labels[i]), "valid": valid}


class TfdsSource:
    """A TFDS split through `tfds.data_source`, with CoOp's class cleaning and relabelling."""

    def __init__(self, ds, raw_labels, keep, label_map, classnames, template, name):
        self.ds, self.keep, self.name = ds, keep, name
        self._labels = label_map[raw_labels[keep]]
        self.label_map = label_map
        self.classnames = list(classnames)
        self.template = template
        self.bad = BadImages()

    def __len__(self):
        return len(self.keep)

    def labels(self):
        return self._labels

    def __getitem__(self, i):
        example = self.ds[int(self.keep[i])]
        image, valid = decode(example["image"], f"{self.name}[{self.keep[i]}]", self.bad)
        return {"image": image, "label": int(self._labels[i]), "valid": valid}


# ---------------------------------------------------------------------------------------------
# CoOp folders


def _read_classnames_txt(path: str) -> dict[str, str]:
    """CoOp's ImageNet classnames.txt: 'n01440764 tench' per line."""
    out = {}
    with open(path) as f:
        for line in f:
            wnid, _, name = line.strip().partition(" ")
            if wnid:
                out[wnid] = name
    return out


def _coop_split(preset: DatasetPreset, root: str, split: str) -> FolderSource:
    path = os.path.join(root, preset.split_file)
    try:
        with open(path) as f:
            table = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read CoOp split file {path}: {e}") from e
    key = {"train": "train", "val": "val", "test": "test"}[split]
    if key not in table:
        raise DataError(f"{path} has no {key!r} split (has {sorted(table)})")
    names: dict[int, str] = {}
    for part in table.values():  # names from every split, so label ids cover all classes
        for _, label, name in part:
            names[int(label)] = name
    classnames = [names[i] for i in range(max(names) + 1)]
    items = [(rel, int(label)) for rel, label, _ in table[key]]
    return FolderSource(os.path.join(root, preset.image_dir), items, classnames, preset.template)


def _aircraft_split(preset: DatasetPreset, root: str, split: str) -> FolderSource:
    """FGVC-Aircraft's official files: variants.txt and images_variant_{train,val,test}.txt."""
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
    return FolderSource(os.path.join(root, preset.image_dir), items, classnames, preset.template)


def _imagenet_folder(preset: DatasetPreset, root: str, split: str) -> FolderSource:
    """ImageNet-style folders of wnid subdirectories, named by classnames.txt."""
    names_path = os.path.join(root, "classnames.txt")
    if not os.path.exists(names_path):
        raise DataError(f"{names_path} not found: ImageNet-family folders need CoOp's "
                        "classnames.txt (one 'wnid name' per line) beside the images")
    wnids = _read_classnames_txt(names_path)
    order = sorted(wnids)
    base = os.path.join(root, preset.image_dir)
    if preset.name == "imagenet":
        base = os.path.join(base, "train" if split == "train" else "val")
    folders = sorted(os.listdir(base))
    if preset.name == "imagenetv2":  # folders are ImageNet label indices 0..999
        folder_class = {d: int(d) for d in folders if d.isdigit()}
    else:
        unknown = [d for d in folders if d not in wnids]
        if unknown:
            raise DataError(f"{base} has folders not in classnames.txt: {unknown[:5]}")
        folder_class = {d: order.index(d) for d in folders}
    present = sorted(set(folder_class.values()))
    classes = present if preset.subset else list(range(len(order)))
    remap = {c: i for i, c in enumerate(classes)}
    items = []
    for d in folders:
        if d in folder_class:
            for f in sorted(os.listdir(os.path.join(base, d))):
                items.append((os.path.join(d, f), remap[folder_class[d]]))
    return FolderSource(base, items, [wnids[order[c]] for c in classes], preset.template)


# ---------------------------------------------------------------------------------------------
# TFDS


def _tfds_split(preset: DatasetPreset, split: str, data_dir: str | None,
                imagenet_names: dict[str, str] | None) -> TfdsSource:
    import tensorflow_datasets as tfds
    tfds_split = preset.splits[split]
    try:
        ds = tfds.data_source(preset.tfds_name, split=tfds_split, data_dir=data_dir,
                              download=False)
    except Exception as e:
        where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
        manual = (" ImageNet needs its tar files in the manual dir first "
                  "(--manual_dir, see the TFDS imagenet2012 page)." if preset.wordnet_ids else "")
        raise DataError(
            f"dataset {preset.name!r} is not prepared: no CoOp folder "
            f"'{preset.coop_dir}' in the data dir and TFDS {preset.tfds_name!r} split "
            f"{tfds_split!r} is not readable under {where} ({type(e).__name__}: {e}). "
            f"Prepare it with `tfds build {preset.tfds_name} --file_format=array_record"
            f"{' --data_dir=' + data_dir if data_dir else ''}`.{manual} Or put CoOp's folder "
            f"(with {preset.split_file or 'its split files'}) at <data_dir>/{preset.coop_dir}."
        ) from e
    names = tfds.builder(preset.tfds_name, data_dir=data_dir).info.features["label"].names
    raw = _tfds_labels(preset, tfds_split, data_dir, ds)
    if preset.wordnet_ids:
        if imagenet_names is None:
            raise DataError(f"{preset.name}: TFDS labels are WordNet ids; put CoOp's "
                            "classnames.txt in <data_dir>/imagenet/ to name the classes")
        classes = sorted(set(raw.tolist())) if preset.subset else list(range(len(names)))
        classnames = [imagenet_names.get(names[c], names[c]) for c in classes]
    else:
        classes = [c for c, n in enumerate(names) if n not in preset.exclude]
        classnames = [preset.clean(names[c]) for c in classes]
    label_map = np.full(len(names), -1, np.int64)
    label_map[classes] = np.arange(len(classes))
    keep = np.flatnonzero(label_map[raw] >= 0)
    if preset.test_fraction:
        keep = _holdout(raw, keep, preset.test_fraction, test=split == "test")
    return TfdsSource(ds, raw, keep, label_map, classnames, preset.template, preset.name)


def _tfds_labels(preset, tfds_split, data_dir, ds) -> np.ndarray:
    """All labels of a TFDS split; images are not decoded when the reader allows it."""
    import tensorflow_datasets as tfds
    try:  # quiet: without TensorFlow, TFDS prints a banner before failing here
        with contextlib.redirect_stdout(io.StringIO()):
            light = tfds.data_source(preset.tfds_name, split=tfds_split, data_dir=data_dir,
                                     download=False,
                                     decoders={"image": tfds.decode.SkipDecoding()})
            return np.asarray([light[i]["label"] for i in range(len(light))], np.int64)
    except Exception:  # e.g. mock data without TensorFlow cannot skip decoding
        return np.asarray([ds[i]["label"] for i in range(len(ds))], np.int64)


def _holdout(raw, keep, fraction, test: bool) -> np.ndarray:
    """A fixed per-class share of `keep` (seeded, independent of the run seed) as test set."""
    chosen = []
    for c in np.unique(raw[keep]):
        members = keep[raw[keep] == c]
        perm = np.random.default_rng([1234, int(c)]).permutation(members)
        n_test = int(round(fraction * len(members)))
        chosen.append(perm[:n_test] if test else perm[n_test:])
    return np.sort(np.concatenate(chosen))


# ---------------------------------------------------------------------------------------------


def open_split(name: str, split: str, data_dir: str | None = None, **shapes_kwargs):
    """The random-access source of one split ('train', 'val' or 'test') of a dataset."""
    preset = presets.get(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if preset.name == "shapes":
        from adaring_jax.data import shapes
        return shapes.ShapesSource(split={"val": "validation"}.get(split, split), **shapes_kwargs)
    root = os.path.join(data_dir, preset.coop_dir) if data_dir else None
    if preset.wordnet_ids and root and os.path.isdir(os.path.join(root, preset.image_dir)):
        return _imagenet_folder(preset, root, split)
    if root and os.path.isdir(root) and not preset.wordnet_ids:
        if preset.name == "fgvc_aircraft":
            return _aircraft_split(preset, root, split)
        if os.path.exists(os.path.join(root, preset.split_file)):
            return _coop_split(preset, root, split)
        raise DataError(f"{root} exists but has no {preset.split_file}: download CoOp's split "
                        "file for this dataset into it")
    if preset.tfds_name is None:
        raise DataError(f"dataset {name!r} is not in TFDS and no CoOp folder was found at "
                        f"{root or '<data_dir>/' + preset.coop_dir} (pass --config.data.data_dir)"
                        f"; it needs {preset.split_file or 'its official split files'} there")
    imagenet_names = None
    if preset.wordnet_ids and data_dir:  # the set's own classnames.txt, else ImageNet's
        for folder in (preset.coop_dir, "imagenet"):
            path = os.path.join(data_dir, folder, "classnames.txt")
            if os.path.exists(path):
                imagenet_names = _read_classnames_txt(path)
                break
    return _tfds_split(preset, split, data_dir, imagenet_names)
