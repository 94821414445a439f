"""Every command fails the same way: each bad input below ends with exit 2, one line starting
`error:` (absl's usage hint aside), no traceback, and no file written or changed."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT, run_module

CKPT = os.path.join(FIXTURES, "clip_quickgelu_eos2")
IMAGE = os.path.join(ROOT, "docs", "shapes_grid.png")


def _tree(path) -> dict:
    out = {}
    for base, _, files in os.walk(path):
        for f in files:
            p = os.path.join(base, f)
            if os.path.islink(p):
                out[os.path.relpath(p, path)] = "-> " + os.readlink(p)
            else:
                out[os.path.relpath(p, path)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished smoke run, an empty image, a checkpoint with other preprocessing."""
    top = tmp_path_factory.mktemp("surface")
    run_module("adaring_jax.main", "--config=configs/fewshot.py:smoke", f"--workdir={top / 'run'}")
    (top / "empty.png").write_bytes(b"")
    shutil.copytree(CKPT, top / "ckpt")
    with open(top / "ckpt" / "preprocessor_config.json", "w") as f:
        json.dump({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                   "crop_size": {"height": 30, "width": 30}}, f)
    (top / "dangling").symlink_to(top / "nowhere")
    (top / "mine.csv").write_text("the user's own file\n")
    return top


CASES = [
    ("adaring_jax.main", ["--config=configs/fewshot.py:smoke,method=mmaa", "--workdir={new}"],
     "unknown method 'mmaa'"),
    ("adaring_jax.main", ["--config=configs/fewshot.py:smoke", "--workdir={new}",
                          "--config.optim.lrr=1"], "did you mean 'lr'"),
    ("adaring_jax.main", ["--config=configs/fewshot.py:smoke", "--workdir={run}",
                          "--config.data.crop_scale=0.5"], "data.crop_scale: the run has 0.08"),
    ("adaring_jax.main", ["--config=configs/fewshot.py:smoke", "--workdir={new}",
                          "--config.job=pretrain"], "pretraining has its own config"),
    ("adaring_jax.main", ["--config=configs/fewshot.py:smoke", "--workdir={top}/dangling"],
     "a symbolic link"),
    ("adaring_jax.main", ["--config=configs/fewshot.py:smoke,dataset=folder:{top}/nothing",
                          "--workdir={new}"], "no such folder"),
    ("adaring_jax.predict", ["--workdir={run}", "--top_k=0", IMAGE], "--top_k=0 must be >= 1"),
    ("adaring_jax.predict", ["--workdir={run}", "--out={top}/nowhere/p.csv", IMAGE],
     "does not exist"),
    ("adaring_jax.predict", ["--workdir={run}", "--classes=a,,b", IMAGE], "empty class name"),
    ("adaring_jax.predict", ["--workdir={top}/nothing", IMAGE], "no run directory"),
    # Nothing is written into a run directory, nor over a user's file unless asked.
    ("adaring_jax.predict", ["--workdir={run}", "--out={run}/results.json", IMAGE],
     "is inside the run directory"),
    ("adaring_jax.predict", ["--workdir={run}", "--out={run}/config.json", "--overwrite", IMAGE],
     "nothing else is written there, --overwrite or not"),
    ("adaring_jax.predict", ["--workdir={run}", "--out={top}/mine.csv", IMAGE],
     "exists; nothing is replaced unless asked: give --overwrite"),
    ("adaring_jax.export", ["--workdir={run}", "--out={run}"], "is the run directory"),
    ("adaring_jax.export", ["--workdir={run}", "--out={top}", "--overwrite"],
     "it is not an earlier output (no adapter_config.json)"),
    ("adaring_jax.main", ["--config=configs/fewshot.py:smoke", "--workdir={run}/checkpoints/x"],
     "is inside the run directory"),
    ("adaring_jax.compress", ["--workdir={run}", "--out={new}", "--max_rank=0"],
     "--max_rank=0 must be >= 1"),
    ("adaring_jax.compress", ["--workdir={run}", "--out={new}", "--max_rank=2"],
     "compress takes a finished mma run"),
    ("adaring_jax.compress", ["--workdir={run}", "--out={run}/ring", "--max_rank=2"],
     "is inside the run directory"),
    ("adaring_jax.zeroshot", [f"--checkpoint={CKPT}", "--classes=a,,a", IMAGE],
     "empty class name"),
    ("adaring_jax.zeroshot", [f"--checkpoint={CKPT}", "--classes=cat,Cat", IMAGE],
     "names a class twice"),
    ("adaring_jax.zeroshot", [f"--checkpoint={CKPT}", "--classes=a,b", "--top_k=-1", IMAGE],
     "--top_k=-1 must be >= 1"),
    ("adaring_jax.zeroshot", [f"--checkpoint={CKPT}", "--classes=a,b", "{top}/empty.png"],
     "is empty (0 bytes)"),
    ("adaring_jax.zeroshot", [f"--checkpoint={CKPT}", "--classes=a,b", "{top}"],
     "a folder: give its files"),
    ("adaring_jax.zeroshot", ["--checkpoint={top}/ckpt", "--classes=a,b", IMAGE],
     "asks for preprocessing this pipeline does not do: image_mean"),
    ("adaring_jax.zeroshot", ["--checkpoint=openai/clip-vit-base-patch16", "--classes=a,b",
                              IMAGE], "is not a local directory"),
    ("adaring_jax.params", ["--config=configs/fewshot.py:method=mmaa"], "unknown method 'mmaa'"),
    ("adaring_jax.params", ["--config=configs/fewshot.py", "--config.adapter.rankz=2"],
     "unknown config field"),
]


@pytest.mark.parametrize("module,args,message", CASES,
                         ids=[f"{m.split('.')[-1]}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(world, module, args, message):
    new = world / "new"
    before = _tree(world)
    args = [a.format(top=world, run=world / "run", new=new) for a in args]
    out = run_module(module, *args, expect=2)
    lines = [line for line in out.stderr.splitlines() if not line.startswith("See: python -m")]
    # One message: its first line says what; a list of fields may follow, indented.
    assert lines[0].startswith("error: "), out.stderr
    assert not any(line.startswith(("error", "Traceback", "W", "E", "F")) for line in lines[1:]) \
        or "differing fields" in lines[0], out.stderr
    assert message in "\n".join(lines), lines
    assert "Traceback" not in out.stderr + out.stdout
    assert _tree(world) == before
    assert not os.path.exists(new)


def test_a_full_disk_is_one_line_naming_where():
    from adaring_jax import cli
    orbax_like = RuntimeError("Traceback ... RESOURCE_EXHAUSTED: Error writing local file "
                              "\"/data/run/checkpoints/40.orbax-checkpoint-tmp/d/0\": No space "
                              "left on device [OS error 28]\n" + "tensorstore spec\n" * 50)
    assert cli.disk_full(orbax_like).startswith(" (writing /data/run/checkpoints/40")
    wrapped = ValueError("save failed")
    wrapped.__cause__ = OSError(28, "No space left on device", "/data/x.safetensors")
    assert cli.disk_full(wrapped) == " (writing /data/x.safetensors)"
    assert cli.disk_full(ValueError("other")) is None
    assert cli.disk_full(OSError(28, "No space left on device")) == ""


def test_a_workdir_name_that_is_not_utf8_is_refused_before_any_write(tmp_path):
    workdir = os.fsdecode(os.fsencode(str(tmp_path)) + b"/run\xff")
    out = run_module("adaring_jax.main", "--config=configs/fewshot.py:smoke",
                     f"--workdir={workdir}", expect=2)
    assert "is not a UTF-8 path" in out.stderr and "Traceback" not in out.stderr
    assert os.listdir(tmp_path) == []


def test_split_files_with_bad_rows_or_two_names_for_a_label_are_refused(tmp_path):
    from adaring_jax.data import upstream
    from adaring_jax.data.source import DataError
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": [["a.jpg", "0", "cat"]], "test": []}))
    with pytest.raises(DataError, match="row 0 of 'train'.*label \\(an integer >= 0\\)"):
        upstream.read_split_file(str(path))
    table = {"train": [["a.jpg", 0, "cat"], ["b.jpg", 0, "kitten"]], "test": []}
    with pytest.raises(DataError, match="label 0 has two class names, 'cat' and 'kitten'"):
        upstream.split_classnames(table, str(path))


def test_other_libraries_log_lines_are_off_ours_are_kept():
    script = f"""
from absl import app, logging
from adaring_jax import cli
def logs(where, code):  # code that lives at `where`, as Orbax's does
    exec(compile(code, where, "exec"), {{"logging": logging}})
def body():
    logs("/site-packages/orbax/checkpoint/fake.py",
         "logging.warning('w-from-orbax'); logging.error('e-from-orbax')")
    logs({os.path.join(ROOT, "adaring_jax", "data", "fake.py")!r},
         "logging.warning('w-from-us')")
app.run(lambda argv: cli.run(body), flags_parser=cli.parse_flags)
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "w-from-orbax" not in out.stderr and "e-from-orbax" not in out.stderr
    assert "w-from-us" in out.stderr


def test_a_full_disk_while_writing_a_file_names_the_file_and_leaves_no_tmp(tmp_path, monkeypatch):
    from adaring_jax import cli
    from adaring_jax import atomic

    class Full:
        def __init__(self, path, mode):
            self.path = path
            open(path, mode).close()  # the .tmp exists, as a real partial write leaves it

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            raise OSError(28, "No space left on device")

    target = tmp_path / "predictions.csv"
    monkeypatch.setattr(atomic, "open", Full, raising=False)
    with pytest.raises(OSError) as e:
        atomic.write_text(str(target), "a,b\n")
    assert cli.disk_full(e.value) == f" (writing {target})"
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_in_a_command_that_does_not_train_says_what_it_left(capsys):
    from adaring_jax import cli
    full = OSError(28, "No space left on device", "/data/out/adapters.safetensors")
    for advice in (cli.WROTE_NOTHING, cli.EXPORT_REMOVED):
        assert cli.fail(full, advice) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: the disk is full (writing /data/out/adapters.safetensors)")
        assert advice in err and "training" not in err


def test_one_rule_for_what_a_command_may_write(tmp_path):
    """outputs.check, which every command uses: never into a run directory (a symbolic link
    into one included), never over a file or an unrelated folder; --overwrite replaces a file
    or an earlier output of the same kind only; and a write that must not replace fails if the
    file appeared meanwhile."""
    from adaring_jax import atomic
    from adaring_jax.job import outputs, workdir
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "experiment.json").write_text("{}")
    (tmp_path / "link").symlink_to(run)
    for path, kind in [(run / "results.json", "file"), (run / "new.csv", "file"),
                       (tmp_path / "link" / "preds.csv", "file"), (run / "exp", "folder"),
                       (run / "checkpoints", "workdir")]:
        with pytest.raises(outputs.OutputError, match="run directory"):
            outputs.check(str(path), "--out", kind, overwrite=True)
    outputs.check(str(run), "--workdir", "workdir")  # its own workdir: workdir.check decides
    mine = tmp_path / "mine.csv"
    mine.write_text("mine")
    with pytest.raises(outputs.OutputError, match="give --overwrite"):
        outputs.check(str(mine))
    outputs.check(str(mine), overwrite=True)
    export = tmp_path / "export"
    export.mkdir()
    outputs.check(str(export), kind="folder", marker="adapter_config.json")  # empty
    (export / "notes.txt").write_text("x")
    with pytest.raises(outputs.OutputError, match="no adapter_config.json"):
        outputs.check(str(export), kind="folder", overwrite=True, marker="adapter_config.json")
    (export / "adapter_config.json").write_text("{}")
    outputs.check(str(export), kind="folder", overwrite=True, marker="adapter_config.json")
    with pytest.raises(FileExistsError):
        atomic.write_text(str(mine), "new", replace=False)
    assert mine.read_text() == "mine" and sorted(os.listdir(tmp_path)) == [
        "export", "link", "mine.csv", "run"]
    # A folder holding what a run writes, without saying which run, is not a workdir.
    (export / "config.json").write_text("{}")
    with pytest.raises(workdir.WorkdirError, match="holds adapter_config.json|holds config.json"):
        workdir.check_place(str(export))
