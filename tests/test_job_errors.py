"""The job layer under bad inputs and faults: every case ends in one clear message and a
non-zero exit (no traceback), or is handled correctly; nothing in a workdir is overwritten or
lost. Categories: config values, paths and permissions, HF checkpoint directories, Orbax
checkpoints, images, split files, concurrency, divergence."""

import io
import json
import os
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from adaring_jax import data
from adaring_jax.job import validation
from adaring_jax.job import workdir as workdirs
from adaring_jax.data import images
from tests import coop_tree
from tests.test_train import ROOT, SMOKE, _env, _main

INFO_LINE = re.compile(r"^[IW]\d{4} ", re.M)  # absl's INFO/WARNING prefix


def _job(workdir, *extra, config=SMOKE, expect=0):
    out = subprocess.run(_main(str(workdir), *extra, config=config), cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == expect, out.stderr[-3000:]
    if expect:
        assert "Traceback" not in out.stderr, out.stderr[-3000:]
        assert out.stderr.strip().splitlines()[-1].startswith("error:") or \
            "error:" in out.stderr, out.stderr[-3000:]
    return out


def _snapshot(workdir) -> dict:
    """Every file under workdir with its bytes: to check nothing was changed."""
    out = {}
    for base, _, files in os.walk(workdir):
        for f in files:
            path = os.path.join(base, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, workdir)] = fh.read()
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished AdaRing smoke run: the workdir the refusal cases must leave untouched."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    out = _job(workdir)
    assert not INFO_LINE.search(out.stderr), out.stderr[:2000]  # absl/Orbax INFO is off
    assert "step 6/6" in out.stderr and "| adapted |" in out.stdout
    return workdir


# ---------------------------------------------------------------------------------------------
# Config values, all refused before the workdir exists


@pytest.mark.parametrize("args,message", [
    (("--config.optim.epochs=0", "--config.optim.steps=0"),
     "config.optim.epochs=0 must be an integer >= 1"),
    (("--config.eval.batch_size=0",), "config.eval.batch_size=0 must be an integer >= 1"),
    (("--config.adapter.start=4", "--config.adapter.end=2"),
     "config.adapter.start=4 > config.adapter.end=2: the first adapted block must not come "
     "after the last"),
    (("--config.adapter.end=9",), "config.adapter.end=9 is beyond the model's 4 blocks"),
    (("--config.optim.lr=1e9",), "config.optim.lr=1000000000.0 must be a number > 0 and <= 10"),
    (("--config.optim.lr=nan",), "config.optim.lr=nan must be a number"),
    (("--config.loss.kl=-1",), "config.loss.kl=-1.0 must be a number >= 0"),
    (("--config.data.prompt=clip",), "config.data.prompt='clip' is not valid"),
    (("--config.x=3",), "error: unknown config field --config.x"),
    (("--config.optim.lr=fast",), "could not convert string to float: 'fast'"),
])
def test_bad_config_values_end_in_one_message_before_any_effect(tmp_path, args, message):
    workdir = tmp_path / "run"
    out = _job(workdir, *args, expect=2)
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 3, out.stderr
    assert not workdir.exists()


def test_bad_config_arguments(tmp_path):
    out = _job(tmp_path / "a", config="--config=configs/fewshot.py:smoke,dataset=dtd", expect=2)
    assert "smoke runs on the embedded shapes world; drop dataset=dtd" in out.stderr
    out = _job(tmp_path / "b", config="--config=configs/fewshot.py:method=lora,ranks=x",
               expect=2)
    assert "config argument ranks='x': expected a tuple" in out.stderr
    from configs import fewshot
    assert fewshot.get_config("smoke,shots=4").data.shots == 4  # honoured, not dropped
    assert fewshot.get_config("smoke").data.shots == 2


def test_validation_names_the_field_for_every_numeric_mistake():
    from configs import fewshot
    for field, value in (("optim.batch_size", 0), ("log_every", 0), ("checkpoint_every", 0),
                         ("max_to_keep", 0), ("data.num_threads", -1), ("data.crop_scale", 0.0),
                         ("data.min_usable", 1.5), ("adapter.alpha", 0.0), ("adapter.hidden", 0),
                         ("optim.steps", -1), ("seed", -1), ("model.init_seed", -2),
                         ("optim.momentum", 1.5), ("adapter.max_mode", 1), ("adapter.ranks", ()),
                         ("data.data_dir", "/nonexistent/data")):
        config = fewshot.get_config("smoke")
        config.unlock()
        node, *rest = field.split(".")
        if rest:
            setattr(config[node], rest[0], value)
        else:
            setattr(config, node, value)
        with pytest.raises(validation.ConfigError, match=re.escape(f"config.{field}")):
            validation.validate(config)


def test_eval_batch_need_not_divide_the_devices(finished, tmp_path):
    """CoOp's eval batch of 100 on 8 devices: rounded up and padded, the same accuracy."""
    workdir = tmp_path / "run"
    out = subprocess.run(_main(str(workdir), "--config.eval.batch_size=30"), cwd=ROOT,
                         env=_env(devices=8), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    a = json.loads((finished / "results.json").read_text())
    b = json.loads((workdir / "results.json").read_text())
    assert a["zeroshot"] == b["zeroshot"]
    np.testing.assert_allclose(list(a["adapted"].values()), list(b["adapted"].values()),
                               atol=1e-6)
    # A training batch must split evenly: refused before anything is written.
    out = subprocess.run(_main(str(tmp_path / "b"), "--config.optim.batch_size=12"), cwd=ROOT,
                         env=_env(devices=8), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "must be divisible by the 8 devices" in out.stderr
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------
# Paths, permissions, checkpoints


def test_a_failed_check_writes_nothing_and_the_corrected_command_runs(tmp_path):
    workdir = tmp_path / "run"
    out = _job(workdir, config="--config=configs/fewshot.py:checkpoint=/nonexistent", expect=2)
    assert "no checkpoint directory at /nonexistent" in out.stderr
    assert not workdir.exists()
    _job(workdir)  # the corrected command in the same workdir


def test_hf_checkpoint_directories(tmp_path):
    bad = tmp_path / "clip"
    bad.mkdir()
    out = _job(tmp_path / "a", config=f"--config=configs/fewshot.py:checkpoint={bad}", expect=2)
    assert f"no config.json in {bad}" in out.stderr
    (bad / "config.json").write_text("{not json")
    out = _job(tmp_path / "b", config=f"--config=configs/fewshot.py:checkpoint={bad}", expect=2)
    assert "config.json" in out.stderr and "JSON" in out.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_workdir_paths_and_permissions(tmp_path, monkeypatch):
    out = _job("", expect=2)
    assert "--workdir is empty" in out.stderr
    afile = tmp_path / "file"
    afile.write_text("x")
    out = _job(afile, expect=2)
    assert f"workdir {afile} is a file" in out.stderr
    out = _job(afile / "run", expect=2)
    assert "is a file, not a directory" in out.stderr
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # the tests may run as root
    with pytest.raises(workdirs.WorkdirError, match="is not writable by this user"):
        workdirs.check(str(tmp_path / "new"), {})


def test_truncated_orbax_checkpoint_is_refused_not_replaced(finished, tmp_path):
    import shutil
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    os.remove(workdir / "results.json")  # an unfinished run resumes from its checkpoint
    step = workdir / "checkpoints" / "6"
    for base, _, files in os.walk(step):
        for f in files:
            if f.startswith("_METADATA") or f == "_CHECKPOINT_METADATA":
                os.remove(os.path.join(base, f))
    before = _snapshot(workdir)
    out = _job(workdir, expect=2)
    assert "cannot restore checkpoint step 6" in out.stderr
    assert _snapshot(workdir).keys() >= {k for k in before if not k.startswith(".lock")}


# ---------------------------------------------------------------------------------------------
# Workdirs: fingerprints for every method, one run at a time


def test_zeroshot_in_a_finished_adaring_workdir_is_refused_and_changes_nothing(finished):
    before = _snapshot(finished)
    out = _job(finished, config=f"{SMOKE},method=zeroshot", expect=2)
    assert "belongs to a different experiment" in out.stderr and "method" in out.stderr
    assert _snapshot(finished) == before


def test_a_second_run_on_a_busy_workdir_is_refused_naming_the_holder(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    lock = workdirs.Lock(str(workdir))
    lock.acquire()
    try:
        out = _job(workdir, expect=2)
    finally:
        lock.release()
    assert f"workdir {workdir} is in use by pid {os.getpid()}" in out.stderr
    assert sorted(os.listdir(workdir)) == [".lock"]


# ---------------------------------------------------------------------------------------------
# Divergence


def test_a_diverging_run_stops_keeps_finite_checkpoints_and_writes_no_results(tmp_path):
    workdir = tmp_path / "run"
    out = _job(workdir, "--config.optim.lr=10", "--config.log_every=1",
               "--config.checkpoint_every=1", expect=2)
    m = re.search(r"error: training diverged: (loss|grad_norm) is not finite at step (\d+)",
                  out.stderr)
    assert m, out.stderr[-2000:]
    bad = int(m.group(2))
    assert not (workdir / "results.json").exists()
    saved = sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
    assert all(s < bad for s in saved)
    with open(workdir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert all(np.isfinite(r["loss"]) for r in records)


# ---------------------------------------------------------------------------------------------
# Data: empty splits, misplaced folders, malformed split files, odd images


def _pets(tmp_path, **kw):
    root = tmp_path / "data"
    coop_tree.make(str(root), ["oxford_pets"], num_classes=4,
                   per_class=kw.get("per_class", {"train": 4, "val": 1, "test": 2}))
    return root


PETS = "--config=configs/fewshot.py:dataset=oxford_pets,arch=tiny,shots=2"
PETS_FLAGS = ("--config.optim.steps=1", "--config.optim.batch_size=4", "--config.adapter.start=2",
              "--config.adapter.end=4")


def test_empty_test_split_and_misplaced_images_stop_before_any_effect(tmp_path):
    root = _pets(tmp_path)
    split = root / "oxford_pets" / "split_zhou_OxfordPets.json"
    table = json.loads(split.read_text())
    split.write_text(json.dumps({**table, "test": []}))
    out = _job(tmp_path / "a", *PETS_FLAGS, f"--config.data.data_dir={root}", config=PETS,
               expect=2)
    assert "evaluation split 'novel'" in out.stderr or "has no images" in out.stderr
    split.write_text(json.dumps(table))
    # Images moved away (but the first listed one, so the folder is still recognized).
    images_dir = root / "oxford_pets" / "images"
    keep = table["train"][0][0]
    for rel, _, _ in table["train"] + table["test"]:
        if rel != keep:
            os.remove(images_dir / rel)
    out = _job(tmp_path / "b", *PETS_FLAGS, f"--config.data.data_dir={root}", config=PETS,
               expect=2)
    assert "images could be read" in out.stderr and "data.min_usable" in out.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_malformed_split_file(tmp_path):
    root = _pets(tmp_path)
    (root / "oxford_pets" / "split_zhou_OxfordPets.json").write_text("[1, 2")
    out = _job(tmp_path / "a", *PETS_FLAGS, f"--config.data.data_dir={root}", config=PETS,
               expect=2)
    assert "cannot read CoOp split file" in out.stderr


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def test_odd_images_decode_to_rgb_and_broken_ones_are_counted():
    bad = images.BadImages()
    gray16 = np.full((6, 5), 40000, np.uint16)
    cases = {
        "16-bit": _encode(Image.fromarray(gray16), "PNG"),
        "cmyk": _encode(Image.new("CMYK", (5, 6), (0, 255, 0, 0)), "JPEG"),
        "alpha": _encode(Image.new("RGBA", (5, 6), (10, 20, 30, 0)), "PNG"),
        "gray": _encode(Image.new("L", (5, 6), 77), "PNG"),
        "palette": _encode(Image.new("P", (5, 6), 3), "PNG"),
    }
    for name, raw in cases.items():
        pixels, ok = images.decode(raw, name, bad)
        assert ok and pixels.shape == (6, 5, 3) and pixels.dtype == np.uint8, name
    assert images.decode(cases["16-bit"], "16", bad)[0].max() == round(40000 * 255 / 65535)
    for name, raw in {"truncated": cases["gray"][:20], "text": b"not an image"}.items():
        pixels, ok = images.decode(raw, name, bad)
        assert not ok and pixels.shape == (8, 8, 3)
    assert len(bad) == 2


def test_results_count_skipped_images(tmp_path):
    root = _pets(tmp_path, per_class={"train": 4, "val": 1, "test": 12})
    table = json.loads((root / "oxford_pets" / "split_zhou_OxfordPets.json").read_text())
    broken = table["test"][-1][0]
    (root / "oxford_pets" / "images" / broken).write_bytes(b"broken")
    workdir = tmp_path / "run"
    _job(workdir, *PETS_FLAGS, f"--config.data.data_dir={root}", config=PETS)
    results = json.loads((workdir / "results.json").read_text())
    assert sum(results["skipped_images"].values()) == 1


def test_data_error_is_a_user_error():
    assert issubclass(data.DataError, ValueError)
    from adaring_jax.errors import UserError
    assert issubclass(data.DataError, UserError)


def test_resume_drops_a_metrics_line_cut_short_by_a_kill(tmp_path):
    from adaring_jax.job import metrics
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2, "loss": 1.0}\n{"step": 4, "loss": 0.9}\n{"step": 6, "lo')
    writer = metrics.MetricWriter(str(tmp_path))
    writer.truncate_after(4)
    writer.write(6, {"loss": 0.8})
    writer.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [2, 4, 6]
