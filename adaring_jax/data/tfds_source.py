"""TFDS datasets as random-access sources, on TFDS's own splits or on CoOp's split file.

TFDS splits are not CoOp's (other train/test partitions, other class orders), so a run on them
is never comparable with the published tables. Where a TFDS dataset records each image's source
file name (every TFDS set of the suite except food101), CoOp's `split_zhou_*.json` is applied to
it instead: each (path, label, class name) row of the split file is matched to the one TFDS
record of that file, across all of the dataset's TFDS splits, and the source serves exactly the
split file's images, labels and class names in the split file's order.
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np

from adaring_jax.data import images, upstream
from adaring_jax.data.presets import DatasetPreset
from adaring_jax.data.source import DataError

# CoOp split names -> the word a CoOp path uses for a TFDS split ("cars_train/00001.jpg").
_SPLIT_WORDS = {"train": "train", "validation": "val", "test": "test"}


class TfdsSource:
    """Records of one or more TFDS splits (`readers`), addressed by (reader, record) pairs."""

    def __init__(self, readers, reader_of, records, labels, classnames, template, name,
                 paths=None, dataset_dir=None, provenance="", comparable=False,
                 upstream_order=False):
        self.readers, self.name = readers, name
        self.reader_of = np.asarray(reader_of, np.int64)
        self.records = np.asarray(records, np.int64)
        self._labels = np.asarray(labels, np.int64)
        self.classnames = list(classnames)
        self.template = template
        self.paths = paths  # file names (or CoOp's relative paths), when TFDS records them
        self.dataset_dir = dataset_dir  # where upstream caches for this dataset may be
        self.provenance, self.comparable = provenance, comparable
        self.upstream_order = upstream_order  # items in the order upstream lists them
        self.bad = images.BadImages()

    def __len__(self):
        return len(self.records)

    def labels(self):
        return self._labels

    def __getitem__(self, i):
        r = int(self.records[i])
        example = self.readers[int(self.reader_of[i])][r]
        image, valid = images.decode(example["image"], f"{self.name}[{r}]", self.bad)
        return {"image": image, "label": int(self._labels[i]), "valid": valid}

    def reorder(self, order) -> None:
        """Serve the items in `order` (indices into the current order)."""
        order = np.asarray(order, np.int64)
        self.reader_of, self.records = self.reader_of[order], self.records[order]
        self._labels = self._labels[order]
        if self.paths is not None:
            self.paths = [self.paths[i] for i in order]


def _open(preset: DatasetPreset, tfds_split: str, data_dir: str | None):
    import tensorflow_datasets as tfds
    try:
        return tfds.data_source(preset.tfds_name, split=tfds_split, data_dir=data_dir,
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


def _metadata(preset: DatasetPreset, tfds_split: str, data_dir, ds) -> tuple[np.ndarray, list]:
    """(labels, file names or None) of every record of a split, decoding no image."""
    import tensorflow_datasets as tfds
    key = preset.tfds_file_key
    features = tfds.builder(preset.tfds_name, data_dir=data_dir).info.features
    skip = {k: tfds.decode.SkipDecoding() for k, f in features.items()
            if isinstance(f, tfds.features.Image)}

    def read(source):
        labels = np.asarray([source[i]["label"] for i in range(len(source))], np.int64)
        names = None
        if key:
            names = [source[i][key] for i in range(len(source))]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        return labels, names

    try:  # quiet: without TensorFlow, TFDS prints a banner before failing here
        with contextlib.redirect_stdout(io.StringIO()):
            light = tfds.data_source(preset.tfds_name, split=tfds_split, data_dir=data_dir,
                                     download=False, decoders=skip)
            return read(light)
    except Exception:  # e.g. mock data without TensorFlow cannot skip decoding
        return read(ds)


def label_names(preset: DatasetPreset, data_dir) -> list[str]:
    import tensorflow_datasets as tfds
    return tfds.builder(preset.tfds_name, data_dir=data_dir).info.features["label"].names


def tfds_split(preset: DatasetPreset, split: str, data_dir: str | None,
               imagenet_names: dict[str, str] | None, dataset_dir: str | None) -> TfdsSource:
    """One of our splits ('train', 'val', 'test') on TFDS's own partition of the data."""
    tfds_name_split = preset.splits[split]
    ds = _open(preset, tfds_name_split, data_dir)
    names = label_names(preset, data_dir)
    raw, files = _metadata(preset, tfds_name_split, data_dir, ds)
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
    where = f"TFDS {preset.tfds_name} split {tfds_name_split!r}"
    if preset.wordnet_ids:  # the ImageNet family: the same images and classes as upstream's
        provenance, comparable = f"{where} (the same images as upstream's folders)", True
    else:
        provenance = (f"{where}: TFDS's own split, not CoOp's, so numbers are not comparable "
                      "with published ones")
        provenance += (f"; put CoOp's {preset.split_file} in <split_dir>/{preset.coop_dir}/ to "
                       "use CoOp's split on these records" if preset.tfds_file_key and
                       preset.split_file else f"; TFDS {preset.tfds_name} records no file "
                       "names, so CoOp's split cannot be applied: use CoOp's folder")
        comparable = False
    return TfdsSource([ds], np.zeros(len(keep)), keep, label_map[raw[keep]], classnames,
                      preset.template, preset.name,
                      None if files is None else [files[i] for i in keep], dataset_dir,
                      provenance, comparable)


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
# CoOp's split file on TFDS records


def _stem(part: str) -> str:
    return os.path.splitext(part)[0].lower()


def _norm(name: str) -> str:
    return name.lower().replace("_", " ").replace("-", " ").strip()


def match_records(rows, records) -> np.ndarray:
    """For each CoOp row (relative path, label, class name), the index into `records`
    ((tfds split, file name, tfds label name), ...) of the record of the same file; -1 when
    none or several match. A file name matches a path when its components are the path's last
    components (extensions aside); ties are broken by the TFDS split a path names
    ('cars_train/...') and then by the class folder a path names ('accordion/image_0001.jpg')."""
    by_stem: dict[str, list[int]] = {}
    for j, (_, name, _) in enumerate(records):
        parts = upstream.path_parts(name)
        if parts:
            by_stem.setdefault(_stem(parts[-1]), []).append(j)
    out = np.full(len(rows), -1, np.int64)
    for i, (rel, _, _) in enumerate(rows):
        parts = upstream.path_parts(rel)
        stems = [_stem(p) for p in parts]

        def same_file(j):
            name = [_stem(p) for p in upstream.path_parts(records[j][1])]
            return name == stems[-len(name):]

        def same_split(j):  # "cars_train/00001.jpg" names the TFDS train split
            word = _SPLIT_WORDS.get(records[j][0], records[j][0])
            return len(parts) > 1 and word in parts[0].lower().replace("-", "_").split("_")

        def same_class(j):  # "accordion/image_0001.jpg" names the class
            return len(parts) > 1 and _norm(records[j][2]) == _norm(parts[-2])

        cands = [j for j in by_stem.get(stems[-1], ()) if same_file(j)]
        for keep in (same_split, same_class):
            if len(cands) > 1:
                cands = [j for j in cands if keep(j)] or cands
        if len(cands) == 1:
            out[i] = cands[0]
    return out


def tfds_coop_split(preset: DatasetPreset, split: str, data_dir: str | None, split_path: str,
                    table: dict) -> TfdsSource:
    """One split of CoOp's split file, served from the TFDS records of the same files."""
    if split not in table:
        raise DataError(f"{split_path} has no {split!r} split (has {sorted(table)})")
    if not preset.tfds_file_key:
        raise DataError(
            f"{split_path} is CoOp's split, but its images are not under "
            f"{os.path.dirname(split_path)} and TFDS {preset.tfds_name} records no file names, "
            f"so the split cannot be applied to TFDS: put CoOp's {preset.name} images beside "
            "the split file, or remove the split file to run on TFDS's own split (not "
            "comparable with published numbers)")
    classnames = upstream.split_classnames(table, split_path)
    names = label_names(preset, data_dir)
    readers, records = [], []
    for k, tfds_name_split in enumerate(dict.fromkeys(preset.splits.values())):
        ds = _open(preset, tfds_name_split, data_dir)
        labels, files = _metadata(preset, tfds_name_split, data_dir, ds)
        readers.append(ds)
        records += [(tfds_name_split, f, names[l], k, r)
                    for r, (l, f) in enumerate(zip(labels.tolist(), files))]
    rows = table[split]
    hit = match_records(rows, [r[:3] for r in records])
    if (hit < 0).any():
        bad = [rows[i][0] for i in np.flatnonzero(hit < 0)[:3]]
        raise DataError(
            f"{int((hit < 0).sum())} of {len(rows)} images of the {split!r} split in "
            f"{split_path} have no single TFDS {preset.tfds_name} record of the same file name "
            f"(e.g. {', '.join(bad)}): the TFDS copy holds other files than CoOp's")
    coop_labels = np.asarray([int(r[1]) for r in rows], np.int64)
    tfds_labels = np.asarray([names.index(records[j][2]) for j in hit], np.int64)
    pairs = set(zip(coop_labels.tolist(), tfds_labels.tolist()))
    if len(pairs) != len({a for a, _ in pairs}) or len(pairs) != len({b for _, b in pairs}):
        raise DataError(f"{split_path}: file names match TFDS {preset.tfds_name} records but "
                        "their classes do not correspond one to one; the files differ")
    note = f" ({preset.tfds_note})" if preset.tfds_note else ""
    return TfdsSource(readers, [records[j][3] for j in hit], [records[j][4] for j in hit],
                      coop_labels, classnames, preset.template, preset.name,
                      [r[0] for r in rows], os.path.dirname(split_path),
                      f"CoOp split file {split_path} applied to TFDS {preset.tfds_name} by file "
                      f"name{note}", True, upstream_order=True)
