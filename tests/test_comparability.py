"""Comparability with the published tables: prompts, Dassl's few-shot draw and its cache,
MMA's recipe (batch, per-epoch cosine), real-layout ImageNet-A/R folders, CoOp splits on TFDS."""

import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
from PIL import Image

from adaring_jax.job import backbone, optim, validation
from adaring_jax.data import presets, prompts, tfds_source, upstream
from adaring_jax import data
from configs import base2novel
from tests import coop_tree

# CoOp trainers/zsclip.py CUSTOM_TEMPLATES (L13-29), by our preset names: the zero-shot row.
COOP_TEMPLATES = {
    "oxford_pets": "a photo of a {}, a type of pet.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "dtd": "{} texture.", "eurosat": "a centered satellite photo of {}.",
    "stanford_cars": "a photo of a {}.", "food101": "a photo of {}, a type of food.",
    "sun397": "a photo of a {}.", "caltech101": "a photo of a {}.",
    "ucf101": "a photo of a person doing {}.", "imagenet": "a photo of a {}.",
    "imagenet_sketch": "a photo of a {}.", "imagenetv2": "a photo of a {}.",
    "imagenet_a": "a photo of a {}.", "imagenet_r": "a photo of a {}."}
NAMES = ["american_bulldog", "Yorkshire_terrier", "yin_yang", "Apply_Eye_Makeup", "Annual Crop"]


def _config(method, dataset):
    return base2novel.get_config(
        f"method={method},dataset={dataset},checkpoint=openai/clip-vit-base-patch16")


@pytest.mark.parametrize("dataset", sorted(COOP_TEMPLATES))
def test_prompts_equal_what_the_upstream_trainers_build(dataset):
    preset = presets.get(dataset)
    # CoOp zsclip.py L43: temp.format(c.replace("_", " ")).
    coop = [COOP_TEMPLATES[dataset].format(c.replace("_", " ")) for c in NAMES]
    # MMA mmadapter.py L102-103: "a photo of a" + " " + name + "." after the same replace.
    mma = ["a photo of a" + " " + c.replace("_", " ") + "." for c in NAMES]
    for method, adapted in (("zeroshot", coop), ("mma", mma), ("adaring", mma)):
        c = _config(method, dataset)
        got = data.class_prompts(NAMES, prompts.template(c.data.prompt, preset.template))
        assert got == adapted, method
        row = data.class_prompts(NAMES, prompts.template(c.data.zeroshot_prompt, preset.template))
        assert row == coop, method  # every run's zero-shot row: the published one


def test_prompt_style_is_a_checked_config_field():
    c = _config("mma", "dtd")
    c.data.prompt = "clip"
    with pytest.raises(ValueError, match="config.data.prompt='clip' is not valid; choose from: "
                                         "mma, coop"):
        validation.validate(c)


# ---------------------------------------------------------------------------------------------
# Dassl's few-shot draw

# label -> images, in order of first appearance in the split (classes interleave round-robin).
SIZES = {2: 20, 0: 18, 3: 6, 1: 17, 4: 3}
# What Dassl yields on this split (generate_fewshot_dataset, base_dataset.py L167-209, after
# random.seed(seed)), in its order: per class in order of first appearance, random.sample.
DASSL = {
    (1, 1): "c2_04 c0_02 c3_02 c1_03 c4_01",
    (1, 2): "c2_01 c0_02 c3_00 c1_11 c4_00",
    (1, 3): "c2_07 c0_17 c3_01 c1_11 c4_02",
    (4, 1): "c2_04 c2_18 c2_02 c2_08 c0_03 c0_15 c0_14 c0_07 c3_05 c3_03 c3_01 c3_00 c1_15 c1_00 "
            "c1_14 c1_13 c4_00 c4_01 c4_02",
    (4, 2): "c2_01 c2_02 c2_18 c2_11 c0_05 c0_09 c0_08 c0_16 c3_01 c3_04 c3_00 c3_02 c1_05 c1_13 "
            "c1_10 c1_06 c4_00 c4_01 c4_02",
    (4, 3): "c2_07 c2_18 c2_17 c2_04 c0_11 c0_15 c0_02 c0_09 c3_00 c3_03 c3_02 c3_04 c1_07 c1_06 "
            "c1_11 c1_16 c4_00 c4_01 c4_02",
    (16, 1): "c2_04 c2_18 c2_02 c2_08 c2_03 c2_07 c2_12 c2_14 c2_13 c2_10 c2_06 c2_15 c2_01 "
             "c2_16 c2_00 c2_09 c0_13 c0_00 c0_14 c0_04 c0_11 c0_12 c0_03 c0_09 c0_01 c0_05 "
             "c0_16 c0_07 c0_06 c0_15 c0_08 c0_10 c3_00 c3_01 c3_02 c3_03 c3_04 c3_05 c1_06 "
             "c1_13 c1_11 c1_00 c1_08 c1_03 c1_07 c1_10 c1_12 c1_14 c1_02 c1_01 c1_05 c1_09 "
             "c1_04 c1_15 c4_00 c4_01 c4_02",
    (16, 2): "c2_01 c2_02 c2_18 c2_11 c2_05 c2_16 c2_12 c2_10 c2_04 c2_14 c2_09 c2_03 c2_00 "
             "c2_13 c2_15 c2_19 c0_13 c0_12 c0_11 c0_08 c0_07 c0_14 c0_04 c0_00 c0_10 c0_05 "
             "c0_17 c0_02 c0_03 c0_16 c0_01 c0_06 c3_00 c3_01 c3_02 c3_03 c3_04 c3_05 c1_05 "
             "c1_07 c1_03 c1_00 c1_02 c1_16 c1_12 c1_10 c1_08 c1_11 c1_04 c1_15 c1_06 c1_01 "
             "c1_14 c1_09 c4_00 c4_01 c4_02",
    (16, 3): "c2_07 c2_18 c2_17 c2_04 c2_11 c2_14 c2_09 c2_19 c2_10 c2_13 c2_01 c2_00 c2_12 "
             "c2_02 c2_16 c2_15 c0_06 c0_15 c0_16 c0_17 c0_10 c0_02 c0_03 c0_13 c0_12 c0_08 "
             "c0_14 c0_05 c0_00 c0_07 c0_01 c0_09 c3_00 c3_01 c3_02 c3_03 c3_04 c3_05 c1_01 "
             "c1_09 c1_12 c1_00 c1_04 c1_07 c1_15 c1_06 c1_10 c1_08 c1_05 c1_14 c1_03 c1_16 "
             "c1_11 c1_13 c4_00 c4_01 c4_02",
}


def _split_rows():
    rows, seen = [], dict.fromkeys(SIZES, 0)
    while any(seen[c] < n for c, n in SIZES.items()):
        for c, n in SIZES.items():
            if seen[c] < n:
                rows.append([f"c{c}_{seen[c]:02d}.jpg", c, f"breed_{c}"])
                seen[c] += 1
    return rows


@pytest.fixture(scope="module")
def pets_dir(tmp_path_factory):
    """A CoOp oxford_pets folder whose train split is `_split_rows()` (Pets names with "_")."""
    root = tmp_path_factory.mktemp("data")
    top = root / "oxford_pets"
    (top / "images").mkdir(parents=True)
    rows = _split_rows()
    for rel, c, _ in rows + [["t0.jpg", 0, ""]]:
        Image.new("RGB", (8, 8), (40 * c, 0, 0)).save(top / "images" / rel)
    table = {"train": rows, "val": rows[:5], "test": [["t0.jpg", 0, "breed_0"]]}
    import json
    (top / "split_zhou_OxfordPets.json").write_text(json.dumps(table))
    return str(root)


@pytest.mark.parametrize("shots,seed", sorted(DASSL))
def test_fewshot_draw_is_dassls_image_for_image(pets_dir, shots, seed):
    source = data.open_split("oxford_pets", "train", pets_dir)
    expected = [f"{n}.jpg" for n in DASSL[shots, seed].split()]
    idx, how = data.draw_train(source, shots, seed)
    assert sorted(source.paths[i] for i in idx) == sorted(expected)
    assert how["fewshot_comparable"] and "Dassl" in how["fewshot"]
    # The draw in Dassl's own order, too.
    order = upstream.fewshot_draw(source.labels(), shots, __import__("random").Random(seed))
    assert [source.paths[i] for i in order] == expected


def _dassl_pickle(path, impaths_labels, key="train"):
    """Write a pickle the way Dassl does: a dict of lists of dassl...base_dataset.Datum."""
    module = types.ModuleType("dassl.data.datasets.base_dataset")

    class Datum:
        def __init__(self, impath, label, classname):
            self._impath, self._label, self._domain, self._classname = impath, label, 0, classname

    Datum.__module__, Datum.__qualname__ = module.__name__, "Datum"
    module.Datum = Datum
    packages = ["dassl", "dassl.data", "dassl.data.datasets"]
    sys.modules.update({p: types.ModuleType(p) for p in packages} | {module.__name__: module})
    try:
        with open(path, "wb") as f:
            pickle.dump({key: [Datum(p, l, "x") for p, l in impaths_labels]}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for name in [*packages, module.__name__]:
            del sys.modules[name]


def test_an_upstream_fewshot_cache_is_used_when_present(tmp_path):
    root = tmp_path / "data"
    coop_tree.make(str(root), ["oxford_pets"], num_classes=3, per_class={"train": 5, "val": 1,
                                                                         "test": 1})
    source = data.open_split("oxford_pets", "train", str(root))
    chosen = [7, 1, 12, 3]  # not what the draw would give; paths from another machine
    cache = upstream.cache_path(str(root / "oxford_pets"), 2, 5)
    os.makedirs(os.path.dirname(cache))
    _dassl_pickle(cache, [(f"/home/someone/DATA/oxford_pets/images/{source.paths[i]}",
                           int(source.labels()[i])) for i in chosen])
    idx, how = data.draw_train(source, 2, 5)
    assert idx.tolist() == sorted(chosen)
    assert how == {"fewshot": f"upstream cache {cache}", "fewshot_comparable": True}
    # Another seed has no cache: Dassl's draw.
    assert "Dassl" in data.draw_train(source, 2, 6)[1]["fewshot"]
    # A cache written for another split file is refused, not silently used.
    _dassl_pickle(cache, [("/x/oxford_pets/images/" + source.paths[7], 2)])
    with pytest.raises(data.DataError, match="other labels"):
        data.draw_train(source, 2, 5)
    _dassl_pickle(cache, [("/x/oxford_pets/images/c9/none.jpg", 0)])
    with pytest.raises(data.DataError, match="not in this dataset's split"):
        data.draw_train(source, 2, 5)


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_hostile_pickle_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned"
    bad = tmp_path / "shot_1-seed_1.pkl"
    with open(bad, "wb") as f:
        pickle.dump({"train": [_Exploit(target)]}, f)
    with pytest.raises(data.DataError, match=r"refused to read .*shot_1-seed_1.pkl: it refers "
                                             r"to (posix|os)\.system, which is not on the "
                                             r"allow-list"):
        upstream.load_pickle(str(bad), ("train",))
    assert not target.exists()
    bad.write_bytes(pickle.dumps({"train": [1, 2]}))
    with pytest.raises(data.DataError, match="not a Dassl pickle"):
        upstream.load_pickle(str(bad), ("train",))
    bad.write_bytes(b"\x80\x05garbage")
    with pytest.raises(data.DataError, match="cannot read .* as an upstream pickle"):
        upstream.load_pickle(str(bad), ("train",))


def test_imagenet_train_order_comes_from_upstreams_preprocessed_pkl(tmp_path):
    root = tmp_path / "data"
    coop_tree.make(str(root), ["imagenet"], num_classes=3, per_class={"train": 4, "test": 1})
    sorted_source = data.open_split("imagenet", "train", str(root))
    assert not sorted_source.upstream_order
    how = data.draw_train(sorted_source, 2, 1)[1]
    assert not how["fewshot_comparable"] and "preprocessed.pkl" in how["fewshot"]
    order = np.random.default_rng(0).permutation(len(sorted_source))  # "unsorted listdir"
    _dassl_pickle(root / "imagenet" / "preprocessed.pkl",
                  [(f"/data/imagenet/images/train/{sorted_source.paths[i]}",
                    int(sorted_source.labels()[i])) for i in order])
    source = data.open_split("imagenet", "train", str(root))
    assert source.upstream_order
    assert source.paths == [sorted_source.paths[i] for i in order]
    idx, how = data.draw_train(source, 2, 1)
    assert how["fewshot_comparable"]
    rng = __import__("random").Random(1)
    expected = upstream.fewshot_draw(source.labels(), 2, rng)
    assert idx.tolist() == sorted(expected.tolist())


# ---------------------------------------------------------------------------------------------
# MMA's recipe


def test_imagenet_trains_at_batch_128_like_mma():
    for protocol in ("base2novel", "fewshot", "cross_dataset", "domain_generalization"):
        config = __import__(f"configs.{protocol}" if protocol != "fewshot" else "configs.fewshot",
                            fromlist=["get_config"]).get_config(
            "dataset=imagenet,checkpoint=openai/clip-vit-base-patch16")
        assert config.optim.batch_size == 128, protocol
    assert _config("mma", "dtd").optim.batch_size == 16


def test_mma_learning_rate_steps_once_per_epoch_like_dassl():
    config = _config("mma", "dtd")
    assert config.optim.schedule == "epoch_cosine" and config.optim.warmup_steps == 0
    steps_per_epoch, epochs = 7, config.optim.epochs
    schedule = optim.make_schedule(config.optim, steps_per_epoch * epochs, steps_per_epoch)
    lr0 = config.optim.lr
    for step in range(steps_per_epoch * epochs):
        # torch CosineAnnealingLR(T_max=epochs, eta_min=0) after `epoch` scheduler steps.
        epoch = step // steps_per_epoch
        expected = lr0 * (1 + math.cos(math.pi * epoch / epochs)) / 2
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6), step
    # The summed learning rate: Dassl's per-epoch cosine, not a per-step decay.
    total = sum(float(schedule(s)) for s in range(steps_per_epoch * epochs))
    assert total == pytest.approx(lr0 * steps_per_epoch * epochs / 2 * (1 + 1 / epochs), rel=1e-6)


def test_compute_dtype_auto_is_float32_on_cpu():
    assert _config("mma", "dtd").model.dtype == "auto"
    assert backbone.compute_dtype("auto") == "float32"  # the tests run on CPU
    assert backbone.compute_dtype("bfloat16") == "bfloat16"


# ---------------------------------------------------------------------------------------------
# Real folder layouts


@pytest.mark.parametrize("name", ["imagenet_a", "imagenet_r"])
def test_real_layout_imagenet_a_r_folders_load_and_hidden_files_are_never_read(tmp_path, name):
    preset = presets.get(name)
    top = tmp_path / preset.coop_dir
    images = top / preset.image_dir
    wnids = ["n00000001", "n00000002", "n00000003"]
    (top / "classnames.txt").parent.mkdir(parents=True)
    (top / "classnames.txt").write_text("".join(f"{w} name_{w[-1]}\n" for w in wnids))
    for w in wnids[:2]:  # a 2-class subset is present
        (images / w).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8)).save(images / w / f"{i}.jpg")
        (images / w / ".DS_Store").write_bytes(b"\0junk")
        (images / w / "Thumbs.db").write_bytes(b"\0junk")
        (images / w / "._0.jpg").write_bytes(b"\0junk")  # macOS resource fork
    (images / "README.txt").write_text("ImageNet-A/R ships this beside the class folders.\n")
    (images / ".hidden_dir").mkdir()
    source = data.open_split(name, "test", str(tmp_path))
    assert sorted(source.paths) == [f"{w}/{i}.jpg" for w in wnids[:2] for i in range(2)]
    assert source.classnames == ["name_1", "name_2"]  # the classes present, as upstream
    assert all(source[i]["valid"] for i in range(len(source)))


# ---------------------------------------------------------------------------------------------
# CoOp's split file on TFDS records


def test_match_records_breaks_ties_by_split_and_class_folder():
    records = [("train", "00001", "car a"), ("test", "00001", "car b"),
               ("train", "image_0001.jpg", "accordion"), ("train", "image_0001.jpg", "faces"),
               ("train", "/a/abbey/sun_x.jpg", "/a/abbey")]
    rows = [("cars_test/00001.jpg", 0, ""), ("cars_train/00001.jpg", 0, ""),
            ("Faces/image_0001.jpg", 1, ""), ("accordion/image_0001.jpg", 2, ""),
            ("a/abbey/sun_x.jpg", 3, ""), ("b/none.jpg", 4, "")]
    assert tfds_source.match_records(rows, records).tolist() == [1, 0, 3, 2, 4, -1]


class _FakeTfds:
    """TFDS as tfds_source sees it: splits of records with a label and a file-name feature."""

    def __init__(self, monkeypatch, splits, names):
        monkeypatch.setattr(tfds_source, "_open", lambda p, s, d: splits[s])
        monkeypatch.setattr(tfds_source, "_metadata", lambda p, s, d, ds: (
            np.asarray([r["label"] for r in ds]), [r[p.tfds_file_key] for r in ds]))
        monkeypatch.setattr(tfds_source, "label_names", lambda p, d: names)


def _png(value):
    import io
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (value, value, value)).save(buf, "PNG")
    return buf.getvalue()


def test_coop_split_file_applies_to_tfds_records_by_file_name(tmp_path, monkeypatch):
    names = ["banded", "zigzagged", "dotted"]  # TFDS label order differs from CoOp's
    splits = {s: [{"label": l, "file_name": f"{names[l]}/{names[l]}_{s}{i}.jpg",
                   "image": _png(10 * l + i)} for l in range(3) for i in range(2)]
              for s in ("train", "validation", "test")}
    _FakeTfds(monkeypatch, splits, names)
    coop = {"banded": 0, "dotted": 1, "zigzagged": 2}
    rows = {"train": [[f"{n}/{n}_test1.jpg", coop[n], n] for n in ("zigzagged", "banded")]
            + [[f"{n}/{n}_validation0.jpg", coop[n], n] for n in names],
            "val": [["dotted/dotted_train0.jpg", 1, "dotted"]],
            "test": [[f"{n}/{n}_train1.jpg", coop[n], n] for n in names]}
    top = tmp_path / "dtd"
    top.mkdir()
    import json
    (top / "split_zhou_DescribableTextures.json").write_text(json.dumps(rows))
    source = data.open_split("dtd", "train", "gs://bucket/tfds", split_dir=str(tmp_path))
    assert source.classnames == ["banded", "dotted", "zigzagged"]
    assert source.paths == [r[0] for r in rows["train"]]
    assert source.labels().tolist() == [r[1] for r in rows["train"]]
    assert source.comparable and source.upstream_order
    assert "applied to TFDS dtd by file name" in source.provenance
    # The image served is the TFDS record of that file.
    z = names.index("zigzagged")
    assert source[0]["image"][0, 0, 0] == 10 * z + 1 and source[0]["label"] == 2
    # A split file naming files TFDS does not have is refused, saying how many and which.
    rows["train"].append(["banded/banded_missing.jpg", 0, "banded"])
    (top / "split_zhou_DescribableTextures.json").write_text(json.dumps(rows))
    with pytest.raises(data.DataError, match=r"1 of 6 images .* banded/banded_missing.jpg"):
        data.open_split("dtd", "train", "gs://bucket/tfds", split_dir=str(tmp_path))


def test_tfds_without_file_names_or_split_file_says_it_is_not_comparable(tmp_path, monkeypatch):
    top = tmp_path / "food-101"
    top.mkdir()
    (top / "split_zhou_Food101.json").write_text('{"train": [["a/1.jpg", 0, "a"]]}')
    with pytest.raises(data.DataError, match="records no file names"):
        data.open_split("food101", "train", str(tmp_path))
