"""Data: presets under TFDS mock data, CoOp folders with odd images, protocols, sharding."""

import json
import logging

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from adaring_jax import data
from adaring_jax.data import pipeline, presets
from adaring_jax.models import preprocess

SUITE = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
         "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101", "imagenetv2", "imagenet_sketch",
         "imagenet_a", "imagenet_r"]
LO = (0 - max(preprocess.CLIP_MEAN)) / min(preprocess.CLIP_STD)
HI = (1 - min(preprocess.CLIP_MEAN)) / min(preprocess.CLIP_STD)


def test_presets_cover_the_suite_and_shapes():
    assert set(data.DATASETS) == set(SUITE) | {"shapes", *presets.SHAPES_SUITE}
    assert data.DATASETS["fgvc_aircraft"].tfds_name is None
    assert data.DATASETS["dtd"].template == "{} texture."
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'; valid: imagenet, caltech101"):
        data.open_split("cifar10", "train")


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
    """A data dir holding only CoOp's classnames.txt for ImageNet (names for the TFDS wnids)."""
    root = tmp_path_factory.mktemp("data")
    names = tfds.builder("imagenet2012").info.features["label"].names
    (root / "imagenet").mkdir()
    (root / "imagenet" / "classnames.txt").write_text(
        "".join(f"{w} class {i}\n" for i, w in enumerate(names)))
    return str(root)


@pytest.mark.parametrize("name", [n for n in SUITE if data.DATASETS[n].tfds_name])
def test_tfds_presets_yield_normalized_batches_under_mock_data(name, imagenet_dir):
    preset = data.DATASETS[name]
    with tfds.testing.mock_data(num_examples=20):
        for split in ("train", "test") if "train" in preset.splits else ("test",):
            src = data.open_split(name, split, imagenet_dir if preset.wordnet_ids else None)
            assert len(src) > 0 and len(src.classnames) == len(set(src.classnames))
            assert src.labels().max() < len(src.classnames)
            if split == "train":
                loader = data.TrainLoader(src, np.arange(len(src)), 4, 24, seed=0, num_threads=1)
                batch = next(loader.batches(0, 1))
            else:
                batch = next(data.eval_batches(src, np.arange(len(src)), 4, 24, num_threads=1))
            assert batch["image"].shape == (4, 24, 24, 3) and batch["image"].dtype == np.float32
            assert LO - 1e-4 <= batch["image"].min() and batch["image"].max() <= HI + 1e-4
            assert batch["label"].dtype == np.int32 and batch["mask"].shape == (4,)
            assert "{}" in src.template
            # TFDS's own splits are CoOp's only for the ImageNet family (same images), and the
            # run is told so.
            assert src.comparable == preset.wordnet_ids
            assert ("not comparable" in src.provenance) != preset.wordnet_ids


def test_imagenet_a_r_use_only_the_classes_present(imagenet_dir):
    with tfds.testing.mock_data(num_examples=30):
        src = data.open_split("imagenet_a", "test", imagenet_dir)
    assert len(src.classnames) <= 30  # mock labels are random: the subset is what is present
    assert sorted(set(src.labels())) == list(range(len(src.classnames)))


def test_caltech_and_cars_names_follow_coop():
    with tfds.testing.mock_data(num_examples=4):
        caltech = data.open_split("caltech101", "test")
        cars = data.open_split("stanford_cars", "test")
    assert len(caltech.classnames) == 100
    assert "airplane" in caltech.classnames and "background google" not in caltech.classnames
    assert cars.classnames[0] == "2000 AM General Hummer SUV"


def _write(path, kind):
    rng = np.random.default_rng(len(str(path)))
    rgb = Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8))
    if kind == "rgb":
        rgb.save(path, "JPEG")
    elif kind == "gray":
        rgb.convert("L").save(path, "PNG")
    elif kind == "cmyk":
        rgb.convert("CMYK").save(path, "JPEG")
    elif kind == "rgba":
        rgb.convert("RGBA").save(path, "PNG")
    elif kind == "corrupt":
        path.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    elif kind == "truncated":
        rgb.save(path, "JPEG")
        path.write_bytes(path.read_bytes()[:60])


@pytest.fixture()
def coop_dir(tmp_path):
    """oxford_pets in CoOp's layout: images/ + split_zhou_OxfordPets.json, odd files included."""
    root = tmp_path / "oxford_pets"
    (root / "images").mkdir(parents=True)
    kinds = ["rgb", "gray", "cmyk", "rgba", "corrupt", "truncated"]
    table = {"train": [], "val": [], "test": []}
    for i in range(24):
        label = i % 3
        kind = kinds[i % len(kinds)] if i < 12 else "rgb"
        name = f"img_{i}.jpg"
        _write(root / "images" / name, kind)
        split = "train" if i < 18 else "test"
        table[split].append([name, label, ["abyssinian", "beagle", "pug"][label]])
    table["val"] = table["train"][:3]
    (root / "split_zhou_OxfordPets.json").write_text(json.dumps(table))
    return tmp_path


def test_coop_folder_with_odd_images(coop_dir, caplog):
    train = data.open_split("oxford_pets", "train", str(coop_dir))
    test = data.open_split("oxford_pets", "test", str(coop_dir))
    assert (len(train), len(test)) == (18, 6)
    assert train.classnames == ["abyssinian", "beagle", "pug"]
    assert train.template == "a photo of a {}, a type of pet."
    with caplog.at_level(logging.WARNING):
        batches = list(data.eval_batches(train, np.arange(len(train)), 8, 16, num_threads=1))
    masks = np.concatenate([b["mask"] for b in batches])
    # 18 training entries, 4 unreadable (2 corrupt, 2 truncated), padded to 24 with mask 0.
    assert len(masks) == 24 and masks.sum() == 14
    assert len(train.bad) == 4 and "skipping unreadable image" in caplog.text
    for b in batches:
        assert np.isfinite(b["image"]).all() and b["image"].shape[1:] == (16, 16, 3)
    # Training through the same odd images never raises; unreadable ones are masked.
    loader = data.TrainLoader(train, np.arange(len(train)), 6, 16, seed=0, num_threads=1)
    masks = np.concatenate([b["mask"] for b in loader.batches(0, 3)])  # one epoch
    assert masks.sum() == 14


def test_coop_folder_without_split_file(tmp_path):
    (tmp_path / "dtd").mkdir()
    with pytest.raises(data.DataError, match="has no split_zhou_DescribableTextures.json"):
        data.open_split("dtd", "train", str(tmp_path))


def test_unprepared_dataset_says_where_it_looked_and_how_to_prepare(tmp_path):
    with pytest.raises(data.DataError) as e:
        data.open_split("dtd", "train", str(tmp_path))
    msg = str(e.value)
    assert "not prepared" in msg and str(tmp_path) in msg
    assert "tfds build dtd --file_format=array_record" in msg
    assert "split_zhou_DescribableTextures.json" in msg
    with pytest.raises(data.DataError, match="manual dir"):
        data.open_split("imagenet", "train", str(tmp_path))
    with pytest.raises(data.DataError, match="'fgvc_aircraft' is not in TFDS"):
        data.open_split("fgvc_aircraft", "train", str(tmp_path))


def test_fewshot_draw():
    labels = np.repeat(np.arange(10), 30)
    np.random.default_rng(0).shuffle(labels)
    a = data.fewshot_indices(labels, 4, seed=1)
    assert np.array_equal(a, data.fewshot_indices(labels, 4, seed=1))
    assert not np.array_equal(a, data.fewshot_indices(labels, 4, seed=2))
    assert np.array_equal(np.sort(a), a) and len(set(a)) == 40
    assert np.array_equal(np.bincount(labels[a]), np.full(10, 4))
    assert data.validation_shots(16) == 4 and data.validation_shots(1) == 1


def test_fewshot_reports_short_classes_by_name(caplog):
    labels = np.array([0] * 5 + [1] * 2 + [2] * 5)
    with caplog.at_level(logging.WARNING):
        idx = data.fewshot_indices(labels, 3, seed=0, classnames=["cat", "dog", "owl"])
    assert np.bincount(labels[idx]).tolist() == [3, 2, 3]
    assert "dog (2)" in caplog.text


def test_base_novel_split_and_relabel():
    base, novel = data.base_novel_split(7)
    assert base.tolist() == [0, 1, 2, 3] and novel.tolist() == [4, 5, 6]
    keep, new = data.relabel(np.array([5, 0, 4, 6, 1]), novel)
    assert keep.tolist() == [0, 2, 3] and new.tolist() == [1, 0, 2]


class _Numbers:
    """A tiny source whose images encode their index, to check what each process reads."""
    classnames = [str(i) for i in range(5)]
    template = "{}"

    def __len__(self):
        return 40

    def labels(self):
        return np.arange(40) % 5

    def __getitem__(self, i):
        return {"image": np.full((12, 12, 3), i * 6, np.uint8), "label": i % 5}


def test_training_data_do_not_depend_on_the_number_of_processes():
    src = _Numbers()
    idx = data.fewshot_indices(src.labels(), 6, seed=3)
    one = list(data.TrainLoader(src, idx, 8, 8, seed=3, num_threads=1).batches(0, 5))
    four = [list(data.TrainLoader(src, idx, 8, 8, seed=3, process_index=p, process_count=4,
                                  num_threads=1).batches(0, 5)) for p in range(4)]
    for step in range(5):
        merged = np.concatenate([four[p][step]["image"] for p in range(4)])
        np.testing.assert_array_equal(merged, one[step]["image"])
        np.testing.assert_array_equal(np.concatenate([four[p][step]["label"] for p in range(4)]),
                                      one[step]["label"])
    # Resuming at a step yields exactly the batches an uninterrupted run sees.
    resumed = list(data.TrainLoader(src, idx, 8, 8, seed=3, num_threads=1).batches(3, 5))
    np.testing.assert_array_equal(resumed[0]["image"], one[3]["image"])


def test_eval_batches_count_every_example_once_across_processes():
    src = _Numbers()
    seen = []
    for p in range(2):
        for b in data.eval_batches(src, np.arange(10), 4, 12, p, 2, num_threads=1):
            # Pixel value encodes the index; padding has mask 0.
            for img, m in zip(b["image"], b["mask"]):
                if m:
                    seen.append(img)
    assert len(seen) == 10


class _Counting(_Numbers):
    """_Numbers that counts how often each index is read."""

    def __init__(self):
        self.reads = {}

    def __getitem__(self, i):
        self.reads[i] = self.reads.get(i, 0) + 1
        return super().__getitem__(i)


def test_training_decodes_each_image_once_and_sees_the_same_batches(monkeypatch):
    idx = data.fewshot_indices(_Numbers().labels(), 6, seed=3)  # 30 images, 3 steps an epoch
    kept = _Counting()
    batches = list(data.TrainLoader(kept, idx, 8, 8, seed=3, num_threads=2).batches(0, 12))
    assert set(kept.reads) <= set(idx.tolist()) and len(kept.reads) > 24  # epochs differ
    assert max(kept.reads.values()) == 1  # 4 epochs, each image decoded once
    # With no room to keep anything, every epoch decodes again; the batches are the same.
    monkeypatch.setattr(pipeline, "DECODED_BUDGET", 0)
    again = _Counting()
    fresh = list(data.TrainLoader(again, idx, 8, 8, seed=3, num_threads=2).batches(0, 12))
    assert sum(again.reads.values()) == 12 * 8  # every example of every step read anew
    for a, b in zip(batches, fresh):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_kept_examples_are_read_only_and_the_budget_holds():
    src = _Counting()
    kept = pipeline._Decoded(src, budget=3 * 12 * 12 * 3)  # room for three images
    for i in range(5):
        kept[i]
    assert sorted(kept.kept) == [0, 1, 2] and kept.left == 0
    with pytest.raises(ValueError, match="read-only"):
        kept[0]["image"][0, 0, 0] = 1
    kept[4]  # beyond the budget: read again
    assert src.reads[4] == 2 and src.reads[0] == 1


def test_reader_threads_default_to_the_cores_up_to_four(monkeypatch):
    assert pipeline.threads(3) == 3
    monkeypatch.setattr(pipeline.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert pipeline.threads(0) == 2
    monkeypatch.setattr(pipeline.os, "sched_getaffinity", lambda pid: set(range(64)),
                        raising=False)
    assert pipeline.threads(0) == 4
