"""Your own data: class folders (with and without pre-made splits), file lists, CoOp split
files and a locally built TFDS dataset go through adapt -> predict -> export; every bad input
ends in one message and writes nothing; a recorded split passed back reproduces the run."""

import json
import os
import re
import shlex

import numpy as np
import pytest
from PIL import Image

from adaring_jax import export, predict
from adaring_jax.data import own, shapes
from adaring_jax.job import runs, train
from configs import fewshot
from adaring_jax.data.source import DataError
from conftest import ROOT, run_module

CLASSES = ("red_circle", "blue-square", "green star", "Yellow_Heart")


def _images(n, seed=0):
    src = shapes.ShapesSource("train", "target", size=64 * n, image_size=32, seed=seed)
    by_class = {}
    for i in range(len(src)):
        ex = src[i]
        by_class.setdefault(ex["label"], []).append(ex["image"])
    return [by_class[c][:n] for c in sorted(by_class)[:len(CLASSES)]]


def make_folder(root, per_class=10, premade=False, seed=0):
    """CLASSES as class folders of PNGs (one nested subfolder, one JPEG, one text file)."""
    for c, (name, imgs) in enumerate(zip(CLASSES, _images(per_class, seed))):
        for i, img in enumerate(imgs):
            split = ("train" if i < per_class // 2 else "test") if premade else ""
            sub = "nested" if i == 1 and not premade else ""
            d = os.path.join(root, split, name, sub)
            os.makedirs(d, exist_ok=True)
            ext = ".JPG" if i == 2 else ".png"
            Image.fromarray(img).save(os.path.join(d, f"im{c}_{i}{ext}"),
                                      format="JPEG" if ext == ".JPG" else "PNG")
        with open(os.path.join(root, split, name, "notes.txt"), "w") as f:
            f.write("not an image")
    return root


def _readme_own_data_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index("## Your own data"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.strip().splitlines()]


def _run_readme(tmp_path, dataset, modules=("adaring_jax.main", "adaring_jax.predict",
                                              "adaring_jax.export")):
    """The README's three commands (those of `modules`), with its paths replaced by the
    test's."""
    subs = {"folder:my_images": dataset, "runs/my_images_export": str(tmp_path / "export"),
            "runs/my_images": str(tmp_path / "run"), "new_images/": str(tmp_path / "new"),
            "predictions.csv": str(tmp_path / "predictions.csv")}
    out = []
    for argv in _readme_own_data_commands():
        assert argv[:2] == ["python", "-m"], argv
        if argv[2] not in modules:
            continue
        argv = [next((a.replace(k, v) for k, v in subs.items() if k in a), a) for a in argv]
        out.append(run_module(argv[2], *argv[3:]))
    return out


def _adapt_predict_export(tmp_path, dataset):
    """The README's three steps in this process at smoke size (its config arguments plus
    `smoke`: the tiny CLIP, 6 steps; the commands as written: the folder and TFDS tests): the
    same job, run loading, prediction and export code without three process starts."""
    (argv,) = [a for a in _readme_own_data_commands() if a[2] == "adaring_jax.main"]
    arg = next(a for a in argv if a.startswith("--config=")).partition(":")[2]
    config = fewshot.get_config("smoke," + arg.replace("folder:my_images", dataset))
    train.train_and_evaluate(config, str(tmp_path / "run"))
    run = runs.load(str(tmp_path / "run"))
    files = predict.image_files([str(_new_images(tmp_path))])
    rows, skipped = predict.predict(run, files, *run.classes(""), top_k=1)
    assert not skipped
    predict.write(str(tmp_path / "predictions.csv"), rows, skipped)
    export.export(runs.load(str(tmp_path / "run"), needs_adapters=True),
                  str(tmp_path / "export"))


def _new_images(tmp_path):
    new = tmp_path / "new"
    new.mkdir()
    for c, imgs in enumerate(_images(2, seed=5)):
        Image.fromarray(imgs[0]).save(new / f"q{c}.png")
    return new


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """The README's adapt command as written on a generated folder: (its tmp dir, the
    folder). The README's predict and export commands read the run (one test each)."""
    tmp_path = tmp_path_factory.mktemp("own_folder")
    data = make_folder(str(tmp_path / "my images"))
    _new_images(tmp_path)
    _run_readme(tmp_path, f"folder:{data}", modules=("adaring_jax.main",))
    return tmp_path, data


def test_a_folder_is_adapted_by_the_readme_command(folder_run):
    tmp_path, data = folder_run
    run = tmp_path / "run"
    results = json.load(open(run / "results.json"))
    assert set(results["adapted"]) == {"test"}
    task = json.load(open(run / "task.json"))
    assert task["classnames"] == ["Yellow Heart", "blue square", "green star", "red circle"]
    assert task["templates"]["adapted"] == "a photo of a {}."
    split = json.load(open(run / "split_zhou_my_images.json"))
    assert {len(split[s]) for s in ("train", "val", "test")} == {5 * 4, 2 * 4, 3 * 4}
    assert any("nested" in row[0] for row in split["train"] + split["val"] + split["test"])
    assert not any(name.endswith(".json") for name in os.listdir(data))  # nothing written there


def test_the_readme_predicts_and_exports_a_folder_run(folder_run):
    tmp_path, data = folder_run
    _run_readme(tmp_path, f"folder:{data}", modules=("adaring_jax.predict", "adaring_jax.export"))
    rows = open(tmp_path / "predictions.csv").read().splitlines()
    assert rows[0].startswith("file,class_1,p_1") and len(rows) == 5
    assert os.path.exists(tmp_path / "export" / "adapters.safetensors")
    config = json.load(open(tmp_path / "export" / "adapter_config.json"))
    assert config["method"] == "adaring"


@pytest.mark.parametrize("form", ["premade", "csv"])
def test_split_folders_and_a_csv_list_go_through_adapt_predict_export(tmp_path, form):
    if form == "premade":
        dataset = f"folder:{make_folder(str(tmp_path / 'pre'), per_class=12, premade=True)}"
    else:
        folder = make_folder(str(tmp_path / "imgs"), per_class=10)
        with open(tmp_path / "labels.csv", "w") as f:
            f.write("path,class\n")
            for name in CLASSES:
                for base, _, files in os.walk(os.path.join(folder, name)):
                    for x in sorted(files):
                        if x.endswith((".png", ".JPG")):
                            rel = os.path.relpath(os.path.join(base, x), str(tmp_path))
                            f.write(f"{rel},{name}\n")
        dataset = f"list:{tmp_path / 'labels.csv'}"
    _adapt_predict_export(tmp_path, dataset)
    results = json.load(open(tmp_path / "run" / "results.json"))
    assert set(results["adapted"]) == {"test"}
    assert len(open(tmp_path / "predictions.csv").read().splitlines()) == 5
    assert os.path.exists(tmp_path / "export" / "adapters.safetensors")
    split = [f for f in os.listdir(tmp_path / "run") if f.startswith("split_zhou_")]
    assert len(split) == 1  # a folder's split, in CoOp's format


@pytest.fixture(scope="module")
def tfds_run(tmp_path_factory):
    """The README's adapt command as written on a locally built TFDS dataset, TFDS's data
    dir from its env var: its tmp dir (the README's predict and export read the run)."""
    tmp_path = tmp_path_factory.mktemp("own_tfds")
    _tfds_dataset(tmp_path / "tfds")
    _new_images(tmp_path)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
        _run_readme(tmp_path, "tfds:own_toy_images", modules=("adaring_jax.main",))
    return tmp_path


def test_a_tfds_dataset_is_adapted_by_the_readme_command(tfds_run):
    tmp_path = tfds_run
    results = json.load(open(tmp_path / "run" / "results.json"))
    assert set(results["adapted"]) == {"test"}
    assert not [f for f in os.listdir(tmp_path / "run") if f.startswith("split_zhou_")]
    task = json.load(open(tmp_path / "run" / "task.json"))
    assert task["classnames"] == ["red circle", "blue square", "green star", "Yellow Heart"]
    # TFDS splits are part of the experiment: other splits are refused on the finished run
    # (the data dir given as a config field this time, not the env var).
    (argv,) = [a for a in _readme_own_data_commands() if a[2] == "adaring_jax.main"]
    config = next(a for a in argv if a.startswith("--config=")).replace(
        "folder:my_images", "tfds:own_toy_images")
    err = run_module("adaring_jax.main", config, f"--workdir={tmp_path / 'run'}",
                     f"--config.data.data_dir={tmp_path / 'tfds'}",
                     "--config.data.tfds_splits=train=train[:50%],test=test", expect=2).stderr
    assert "data.tfds_splits" in err and "Traceback" not in err, err


def test_the_readme_predicts_and_exports_a_tfds_run(tfds_run, monkeypatch):
    tmp_path = tfds_run
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    _run_readme(tmp_path, "tfds:own_toy_images",
                modules=("adaring_jax.predict", "adaring_jax.export"))
    assert len(open(tmp_path / "predictions.csv").read().splitlines()) == 5
    assert os.path.exists(tmp_path / "export" / "adapters.safetensors")


def test_premade_splits_a_csv_list_and_a_split_file_are_used_as_given(tmp_path):
    premade = own.load(f"folder:{make_folder(str(tmp_path / 'pre'), premade=True)}")
    assert not premade.made and set(premade.rows) == {"train", "test"}
    assert all(p.startswith("train" + os.sep) for p, _ in premade.rows["train"])
    folder = make_folder(str(tmp_path / "plain"))
    with open(tmp_path / "list.csv", "w") as f:
        f.write("path,class,split\n")
        for name in CLASSES:
            files = sorted(os.listdir(os.path.join(folder, name)))
            files = [x for x in files if x.endswith((".png", ".JPG"))]
            for i, x in enumerate(files):
                f.write(f"plain/{name}/{x},{name},{'train' if i % 2 else 'test'}\n")
    table = own.load(f"list:{tmp_path / 'list.csv'}")
    assert table.classnames == ["Yellow_Heart", "blue-square", "green star", "red_circle"]
    # 9 images at the top of each class folder (the tenth is nested): 4 train, 5 test.
    assert (len(table.rows["train"]), len(table.rows["test"])) == (4 * 4, 5 * 4)
    # A split recorded for the folder is used as is when passed back.
    made = own.load(f"folder:{folder}")
    path = tmp_path / "split.json"
    path.write_text(json.dumps(made.coop()))
    again = own.load(f"folder:{folder}", str(path))
    assert again.rows == {s: [tuple(r) for r in rows] for s, rows in made.rows.items()}
    assert again.digest() == made.digest()
    # The same file as a dataset of its own (a CoOp split file, paths relative to it).
    (tmp_path / "plain" / "split_zhou_x.json").write_text(json.dumps(made.coop()))
    coop = own.load(f"list:{tmp_path / 'plain' / 'split_zhou_x.json'}")
    assert coop.classnames == made.classnames and coop.rows == again.rows


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    """A smoke run of a generated folder: (its tmp dir, the folder, the run's arguments)."""
    tmp_path = tmp_path_factory.mktemp("recorded")
    folder = make_folder(str(tmp_path / "data"), per_class=8)
    args = ["--config=configs/fewshot.py:smoke,protocol=fewshot,dataset=folder:" + folder]
    run_module("adaring_jax.main", *args, f"--workdir={tmp_path / 'a'}")
    return tmp_path, folder, args


def test_a_recorded_split_reproduces_the_run(recorded_run):
    tmp_path, folder, args = recorded_run
    split = tmp_path / "a" / "split_zhou_data.json"
    run_module("adaring_jax.main", *args, f"--workdir={tmp_path / 'b'}",
               f"--config.data.split_file={split}")
    a, b = (json.load(open(tmp_path / r / "results.json")) for r in "ab")
    assert a["adapted"] == b["adapted"] and a["zeroshot"] == b["zeroshot"]
    assert json.load(open(tmp_path / "b" / "split_zhou_data.json")) == json.load(open(split))


def test_changed_images_make_another_experiment_said_in_words(recorded_run):
    tmp_path, folder, args = recorded_run
    # Images added to the folder make another experiment: the finished run is not replaced.
    Image.fromarray(_images(1)[0][0]).save(os.path.join(folder, CLASSES[0], "new.png"))
    before = {f: (tmp_path / "a" / f).read_bytes() for f in os.listdir(tmp_path / "a")
              if os.path.isfile(tmp_path / "a" / f)}
    err = run_module("adaring_jax.main", *args, f"--workdir={tmp_path / 'a'}", expect=2).stderr
    assert "its data changed: 1 added (the run had 32 images in 4 classes; there are now 33 " \
           "in 4)" in err and "Traceback" not in err, err
    # Images repainted under the same names (and sizes) are another experiment too, said in
    # words; a renamed class folder is named.
    os.remove(os.path.join(folder, CLASSES[0], "new.png"))
    for name in sorted(os.listdir(os.path.join(folder, CLASSES[1])))[:3]:
        path = os.path.join(folder, CLASSES[1], name)
        if name.endswith(".png"):
            pixels = np.asarray(Image.open(path)).copy()
            pixels[0, 0] ^= 1
            Image.fromarray(pixels).save(path)
    os.rename(os.path.join(folder, CLASSES[2]), os.path.join(folder, "green_stars"))
    err = run_module("adaring_jax.main", *args, f"--workdir={tmp_path / 'a'}", expect=2).stderr
    assert "2 images changed, class folder 'green star' renamed to 'green_stars' (the run had " \
           "32 images in 4 classes; there are now 32 in 4)" in err and "Traceback" not in err, err
    assert before == {f: (tmp_path / "a" / f).read_bytes() for f in before}


_BUILDERS = {}  # TFDS registers a builder class by name once per process


def _tfds_dataset(data_dir):
    if "own_toy_images" not in _BUILDERS:
        _BUILDERS["own_toy_images"] = _tfds_builder()
    _BUILDERS["own_toy_images"](data_dir=str(data_dir),
                                file_format="array_record").download_and_prepare()


def _tfds_builder():
    import tensorflow_datasets as tfds

    class OwnToyImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(32, 32, 3), dtype=np.uint8),
                "label": tfds.features.ClassLabel(names=list(CLASSES))}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(8), "test": self._generate_examples(4)}

        def _generate_examples(self, n):
            for c, imgs in enumerate(_images(n)):
                for i, img in enumerate(imgs):
                    yield f"{c}-{i}", {"image": img, "label": c}

    return OwnToyImages


def _bad(tmp_path, build, match):
    dataset = build(tmp_path)
    with pytest.raises(DataError, match=match):
        own.load(dataset)


def _folder_with(tmp_path, layout):
    for rel, n in layout.items():
        d = tmp_path / "d" / rel
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / f"{i}.png")
    return f"folder:{tmp_path / 'd'}"


@pytest.mark.parametrize("layout,match", [
    ({"only": 6}, "has 1 class folders; give at least 2"),
    ({"a": 6, "b": 0}, "class folders without images: 'b'"),
    ({"golden_retriever": 6, "Golden-Retriever": 6}, "both get the class name"),
    ({"a": 6, "b": 3}, "too few images to split"),
    ({"train/a": 3, "train/b": 3, "test/a": 2}, "the test split's classes differ from train's"),
    ({"train/a": 3, "train/b": 3}, "not both train and test"),
])
def test_bad_folders_are_refused_with_one_message(tmp_path, layout, match):
    dataset = _folder_with(tmp_path, layout)
    with pytest.raises(DataError, match=match):
        own.load(dataset)


def test_bad_lists_and_split_files_are_refused(tmp_path):
    folder = make_folder(str(tmp_path / "f"), per_class=6)
    rows = "path,class\n" + "".join(f"f/{c}/missing{i}.png,{c}\n" for c in CLASSES
                                    for i in range(3))
    (tmp_path / "l.csv").write_text(rows)
    with pytest.raises(DataError, match=r"12 of its 12 images are missing \('f/red_circle/"
                                        r"missing0.png'.*\(12 in all\)"):
        own.load(f"list:{tmp_path / 'l.csv'}")
    made = own.load(f"folder:{folder}").coop()
    made["test"].append(["red_circle/not_there.png", 3, "red circle"])
    (tmp_path / "s.json").write_text(json.dumps(made))
    with pytest.raises(DataError, match="does not fit folder .*not_there.png"):
        own.load(f"folder:{folder}", str(tmp_path / "s.json"))
    other = own.load(f"folder:{folder}").coop()
    for rows_ in other.values():
        for row in rows_:
            row[2] = row[2].upper()
    (tmp_path / "o.json").write_text(json.dumps(other))
    with pytest.raises(DataError, match="does not fit folder .*its classes by label"):
        own.load(f"folder:{folder}", str(tmp_path / "o.json"))
    jl = tmp_path / "l.jsonl"
    jl.write_text('{"path": "f/red_circle/im0_0.png", "class": "a", "split": "train"}\n'
                  '{"path": "f/red_circle/im0_3.png", "class": "b", "split": "train"}\n'
                  '{"path": "f/red_circle/im0_4.png", "class": "a", "split": "test"}\n')
    with pytest.raises(DataError, match="classes 'b' have no images in the test split"):
        own.load(f"list:{jl}")


def test_non_utf8_names_are_refused_before_anything_is_written(tmp_path):
    dataset = _folder_with(tmp_path, {"a": 6, "b": 6})
    with open(os.path.join(os.fsencode(str(tmp_path / "d" / "a")), b"caf\xe9.png"), "wb") as f:
        f.write(b"x")
    with pytest.raises(DataError, match="not valid UTF-8"):
        own.load(dataset)
    err = run_module("adaring_jax.main", f"--config=configs/fewshot.py:smoke,dataset={dataset}",
                     f"--workdir={tmp_path / 'run'}", expect=2).stderr
    assert "not valid UTF-8" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "run")


def test_folder_listing_skips_hidden_and_non_image_files_and_reads_classnames_txt(tmp_path):
    folder = make_folder(str(tmp_path / "f"), per_class=6)
    (tmp_path / "f" / ".hidden").mkdir()
    (tmp_path / "f" / "classnames.txt").write_text("red_circle\ta red disc\n"
                                                   "green star\tthe green star\n")
    table = own.load(f"folder:{folder}")
    # Sorted by folder name (code points, as CoOp's sorted listing): capitals first.
    assert table.classnames == ["Yellow Heart", "blue square", "the green star", "a red disc"]
    assert table.skipped_files == 4  # the notes.txt files
    assert sum(len(r) for r in table.rows.values()) == 6 * 4


def _list_folder(tmp_path, per_class=6):
    """A folder of CLASSES and its files relative to tmp_path, by class."""
    folder = make_folder(str(tmp_path / "f"), per_class=per_class)
    files = {}
    for name in CLASSES:
        for base, _, names in os.walk(os.path.join(folder, name)):
            files.setdefault(name, []).extend(
                os.path.relpath(os.path.join(base, x), str(tmp_path)) for x in sorted(names)
                if x.endswith((".png", ".JPG")))
    return files


def test_list_quirks_bom_repeats_contradictions_and_paths_outside(tmp_path, caplog):
    files = _list_folder(tmp_path)
    rows = [f"{p},{c}\n" for c, ps in files.items() for p in ps]
    # Excel's byte-order mark; the first row three more times, the second once more.
    (tmp_path / "l.csv").write_text("\ufeffpath,class\n" + "".join(rows + rows[:1] * 3
                                                                    + rows[1:2]), "utf-8")
    caplog.set_level("WARNING")
    table = own.load(f"list:{tmp_path / 'l.csv'}")
    assert sum(len(r) for r in table.rows.values()) == len(rows)
    assert "4 repeated rows collapsed" in caplog.text
    first = rows[0].split(",")[0]
    (tmp_path / "two.csv").write_text("path,class\n" + "".join(rows) + f"{first},other\n")
    with pytest.raises(DataError, match=f"'{first}' is listed under two classes, "
                                        f"'{CLASSES[0]}' and 'other'"):
        own.load(f"list:{tmp_path / 'two.csv'}")
    (tmp_path / "s.csv").write_text("path,class,split\n" + "".join(
        r.strip() + ",train\n" for r in rows) + rows[0].strip() + ",test\n")
    with pytest.raises(DataError, match="listed under two splits, 'train' and 'test'"):
        own.load(f"list:{tmp_path / 's.csv'}")
    # Paths that leave the list's folder are refused, naming the first few, unless allowed.
    (tmp_path / "sub").mkdir()
    outside = [f"../{p}" for p in [x for ps in files.values() for x in ps]]
    (tmp_path / "sub" / "l.csv").write_text("path,class\n" + "".join(
        f"{p},{c}\n" for p, c in zip(outside, [c for c, ps in files.items() for _ in ps]))
        + f"/etc/passwd,{CLASSES[0]}\n")
    with pytest.raises(DataError, match=r"25 paths lead outside its folder .*\('\.\./f/.*"
                                        r"\(25 in all\).*data.allow_outside"):
        own.load(f"list:{tmp_path / 'sub' / 'l.csv'}")
    (tmp_path / "sub" / "l.csv").write_text("path,class\n" + "".join(
        f"{p},{c}\n" for p, c in zip(outside, [c for c, ps in files.items() for _ in ps])))
    allowed = own.load(f"list:{tmp_path / 'sub' / 'l.csv'}", allow_outside=True)
    assert sorted(allowed.images) == sorted(os.path.normpath(p) for p in outside)


def test_jsonl_errors_show_the_line_and_a_runs_split_file_points_to_split_file(tmp_path):
    (tmp_path / "l.jsonl").write_text('{"path": "a.png", "class": "a"}\n["a.png", "a"]\n')
    with pytest.raises(DataError, match=r"line 2: expected an object .*got '\[\"a.png\", "
                                        r"\"a\"\]'"):
        own.load(f"list:{tmp_path / 'l.jsonl'}")
    folder = make_folder(str(tmp_path / "data"), per_class=6)
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.json").write_text("{}")
    (run / "split_zhou_data.json").write_text(json.dumps(own.load(f"folder:{folder}").coop()))
    with pytest.raises(DataError, match=r"is in a run directory.*--config.data.split_file="):
        own.load(f"list:{run / 'split_zhou_data.json'}")


def test_base_to_novel_needs_two_classes_in_each_half(tmp_path):
    from configs import base2novel
    from adaring_jax.job import task as tasks
    dataset = _folder_with(tmp_path, {"a": 6, "b": 6, "c": 6})
    config = base2novel.get_config(f"smoke,dataset={dataset}")
    with pytest.raises(DataError, match="into 2 base and 1 novel; each half needs at least 2"):
        tasks.build(config, 32, tasks.own_table(config))


def test_unreadable_images_are_found_before_training_in_one_line(tmp_path, caplog):
    from adaring_jax.data.sources import FolderSource
    from adaring_jax.job import task as tasks
    dataset = _folder_with(tmp_path, {"a": 40, "b": 40})
    root = dataset.partition(":")[2]
    items = [(f"{c}/{i}.png", y) for y, c in enumerate("ab") for i in range(40)]
    for i in range(5, 13):  # 8 of 80 broken (90% < 91%): a sample of 32 could miss them
        (tmp_path / "d" / "b" / f"{i}.png").write_bytes(b"broken")
    source = FolderSource(root, items, ["a", "b"], "{}", root, "test")
    caplog.set_level("WARNING")
    with pytest.raises(DataError, match=r"only 72 of 80 images could be read .*unreadable: "
                                        r".*b/10.png, .*\(8 in all\)"):
        tasks.usable_share(source, np.arange(80), "novel", 0.91)
    assert caplog.text.count("skipping unreadable image") == 1


def test_file_digests_are_read_once_cached_by_size_and_mtime_and_verified(tmp_path,
                                                                          monkeypatch, caplog):
    from adaring_jax.data import file_digests
    from adaring_jax import atomic
    monkeypatch.setenv("ADARING_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("ADARING_CACHE", "ADARING_DIGESTS_CACHE"):
        monkeypatch.delenv(var, raising=False)
    for name in "abc":
        (tmp_path / f"{name}.png").write_bytes(name.encode() * 10)
    first = file_digests.digests(str(tmp_path), ["a.png", "b.png", "c.png"])
    assert len(set(first.values())) == 3
    read = []
    real = file_digests.file_digest
    monkeypatch.setattr(file_digests, "file_digest", lambda p: read.append(p) or real(p))
    assert file_digests.digests(str(tmp_path), ["a.png", "b.png", "c.png"]) == first
    assert read == []  # nothing read again
    (tmp_path / "b.png").write_bytes(b"B" * 10)  # the same size, another mtime
    second = file_digests.digests(str(tmp_path), ["a.png", "b.png", "c.png"])
    assert [os.path.basename(p) for p in read] == ["b.png"] and second["b.png"] != first["b.png"]
    cache = next((tmp_path / "cache" / "digests").iterdir())
    assert oct(cache.stat().st_mode & 0o777) == oct(0o666 & ~atomic.umask())  # not 0600
    cache.write_text(cache.read_text().replace(second["a.png"], first["b.png"]))  # tampered
    caplog.set_level("WARNING")
    read.clear()
    assert file_digests.digests(str(tmp_path), ["a.png", "b.png", "c.png"]) == second
    assert len(read) == 3 and "is damaged" in caplog.text


def test_what_changed_in_the_data_is_said_in_words():
    from adaring_jax.data.file_digests import describe_changes
    old = {f"x/{i}.png": ["x", f"d{i}"] for i in range(4)}
    old.update({f"y/{i}.png": ["y", f"e{i}"] for i in range(4)})
    new = {f"z/{i}.png": ["z", f"d{i}"] for i in range(4)}  # x renamed to z
    new.update({f"y/{i}.png": ["y", f"e{i}" if i else "changed"] for i in range(3)})  # 1 removed
    new["y/9.png"] = ["y", "new"]
    assert describe_changes(old, new) == (
        "1 image changed, 1 added, 1 removed, class folder 'x' renamed to 'z' (the run had 8 "
        "images in 2 classes; there are now 8 in 2)")
    relabelled = {**old, "y/0.png": ["x", "e0"]}
    assert describe_changes(old, relabelled, "list").startswith("1 moved to another class")
