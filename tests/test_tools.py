"""The tools for a finished run: predict reproduces the run's accuracy from image files, export
reproduces our features through an independent NumPy CLIP reading only the exported files,
compress turns an MMA run into an adaring run that every other tool and training accept; and
each tool refuses an unfinished run, a zero-shot run where it needs adapters, and a missing
checkpoint with one message. They share one finished run of the README's default job
(conftest.default_run), which first shows that it beats zero-shot."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from adaring_jax import adapters, predict
from adaring_jax import atomic
from adaring_jax.job import evaluate, runs, task as tasks, train
from adaring_jax.models import clip, convert
from configs import fewshot
from conftest import DEFAULT_JOB, ROOT, run_module
from numpy_clip import NumpyCLIP


def _write_split(run_dir, split, out_dir):
    """The run's evaluation images of `split` as PNG files, in evaluation order; labels."""
    rec = runs.read(str(run_dir))
    arch = convert.architecture(rec.config.model.arch, rec.config.model.checkpoint)
    task = tasks.build(rec.config, arch.vision.image_size)
    e = task.evals[split]
    os.makedirs(out_dir, exist_ok=True)
    labels = []
    for n, i in enumerate(e.indices):
        example = e.source[int(i)]
        Image.fromarray(example["image"]).save(os.path.join(out_dir, f"{n:05d}.png"))
        labels.append(e.classnames[example["label"]])
    return labels


def _accuracy(rows, labels):
    return round(100 * np.mean([best[0][0] == y for (_, best), y in zip(rows, labels)]), 2)


def test_default_job_beats_zero_shot(default_run):
    """The README's run command (shortened: conftest.SHORTENED) trains AdaRing well above
    zero-shot CLIP on the shifted domain; the command the fixture runs is the README's."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert f"python -m adaring_jax.main {' '.join(DEFAULT_JOB)} --workdir=runs/default" in readme
    with open(default_run / "results.json") as f:
        results = json.load(f)
    assert results["protocol"] == "base2novel" and results["trainable_params"] == 5172
    zs, ad = results["zeroshot"], results["adapted"]
    assert ad["hm"] > zs["hm"] + 3, results
    assert 100 / 32 * 3 < zs["hm"] < 60


def test_predict_reproduces_the_runs_accuracy_and_takes_unseen_names(default_run, tmp_path):
    results = json.loads((default_run / "results.json").read_text())
    base = _write_split(default_run, "base", tmp_path / "base")
    out = tmp_path / "base.json"
    run_module("adaring_jax.predict", f"--workdir={default_run}", "--split=base", "--top_k=3",
               f"--out={out}", tmp_path / "base")
    got = json.loads(out.read_text())
    rows = [(p["file"], [(c["class"], c["probability"]) for c in p["top_k"]])
            for p in got["predictions"]]
    assert [os.path.basename(f) for f, _ in rows] == [f"{n:05d}.png" for n in range(len(base))]
    assert _accuracy(rows, base) == results["adapted"]["base"]
    assert all(len(best) == 3 and best[0][1] >= best[1][1] for _, best in rows)

    # Novel classes were never trained on: the adapted text tower prompts them by name.
    novel = _write_split(default_run, "novel", tmp_path / "novel")
    run = runs.load(str(default_run))
    names, template = run.classes("novel")
    files = predict.image_files([str(tmp_path / "novel")])
    rows, skipped = predict.predict(run, files, names, template, top_k=1)
    assert not skipped and _accuracy(rows, novel) == results["adapted"]["novel"]
    # Names outside the task (and outside the tiny vocabulary) are prompted as well.
    unseen = ["turquoise zeppelin", "golden kite", *names[:2]]
    rows, _ = predict.predict(run, files[:8], unseen, template, top_k=4)
    assert all(sorted(c for c, _ in best) == sorted(unseen) for _, best in rows)
    assert all(abs(sum(p for _, p in best) - 1) < 1e-5 for _, best in rows)


def test_predict_skips_unreadable_files_and_refuses_bad_input(default_run, tmp_path):
    folder = tmp_path / "images"
    _write_split(default_run, "base", folder)
    for f in sorted(os.listdir(folder))[5:]:
        os.remove(folder / f)
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("not an image, not listed")
    (folder / ".hidden.png").write_bytes(b"never read")
    out = run_module("adaring_jax.predict", f"--workdir={default_run}", f"--out={tmp_path}/p.csv",
                     folder)
    assert "skipped 1 unreadable file(s) of 6" in out.stderr
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("file,class_1,p_1") and len(lines) == 1 + 5
    assert len(out.stdout.strip().splitlines()) == 5 and "Traceback" not in out.stderr
    # An existing --out is replaced only when asked.
    before = (tmp_path / "p.csv").read_bytes()
    err = run_module("adaring_jax.predict", f"--workdir={default_run}", f"--out={tmp_path}/p.csv",
                     folder, expect=2).stderr
    assert "give --overwrite" in err and (tmp_path / "p.csv").read_bytes() == before
    (tmp_path / "p.csv").write_text("old")
    run_module("adaring_jax.predict", f"--workdir={default_run}", f"--out={tmp_path}/p.csv",
               "--overwrite", folder)
    assert (tmp_path / "p.csv").read_bytes() == before

    for args, words in [((folder / "missing",), "no such file or folder"),
                        ((f"--out={tmp_path}/p.txt", folder), ".csv or .json"),
                        (("--split=val", folder), "no evaluation split 'val'")]:
        err = run_module("adaring_jax.predict", f"--workdir={default_run}", *args,
                         expect=2).stderr
        assert words in err and "Traceback" not in err, err


def test_each_tool_refuses_an_unfinished_run_and_a_missing_checkpoint(default_run, tmp_path):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(default_run, unfinished)
    os.remove(unfinished / "results.json")
    lost = tmp_path / "lost"
    shutil.copytree(default_run, lost)
    shutil.rmtree(lost / "checkpoints")
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "one.png")
    for module, extra in [("adaring_jax.predict", [tmp_path / "one.png"]),
                          ("adaring_jax.export", [f"--out={tmp_path}/x"]),
                          ("adaring_jax.compress", [f"--out={tmp_path}/y", "--max_rank=2"])]:
        err = run_module(module, f"--workdir={unfinished}", *extra, expect=2).stderr
        assert "unfinished (no results.json)" in err and "Traceback" not in err, err
    for module, extra in [("adaring_jax.export", [f"--out={tmp_path}/x"]),
                          ("adaring_jax.predict", [tmp_path / "one.png"])]:
        err = run_module(module, f"--workdir={lost}", *extra, expect=2).stderr
        assert "no checkpoints in" in err and "Traceback" not in err, err
    err = run_module("adaring_jax.compress", f"--workdir={default_run}", f"--out={tmp_path}/y",
                     "--max_rank=2", expect=2).stderr
    assert "is a adaring run; compress takes a finished mma run" in err
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path / "y")


def test_export_and_compress_refuse_a_zero_shot_run(tmp_path):
    zs = tmp_path / "zs"
    run_module("adaring_jax.main", "--config=configs/fewshot.py:smoke,method=zeroshot",
               f"--workdir={zs}")
    for module, extra in [("adaring_jax.export", [f"--out={tmp_path}/x"]),
                          ("adaring_jax.compress", [f"--out={tmp_path}/y", "--max_rank=2"])]:
        err = run_module(module, f"--workdir={zs}", *extra, expect=2).stderr
        assert "zeroshot run" in err and "Traceback" not in err, err
    # A warm start from it is refused before the new workdir is written.
    err = run_module("adaring_jax.main", "--config=configs/fewshot.py:smoke,ranks=2",
                     f"--config.adapter.init_from={zs}", f"--workdir={tmp_path}/warm",
                     expect=2).stderr
    assert "is a zero-shot run: it has no adapters" in err and "Traceback" not in err, err
    assert not os.path.exists(tmp_path / "warm")
    # predict works for every method, zero-shot included.
    images = tmp_path / "images"
    _write_split(zs, "base", images)
    out = run_module("adaring_jax.predict", f"--workdir={zs}", "--top_k=2", images)
    assert len(out.stdout.strip().splitlines()) == len(os.listdir(images))


def test_exported_adapters_reproduce_our_features_in_numpy(default_run, tmp_path):
    out = tmp_path / "export"
    run_module("adaring_jax.export", f"--workdir={default_run}", f"--out={out}")
    ref = NumpyCLIP(str(out))
    assert ref.adapter_config["method"] == "adaring"
    run = runs.load(str(default_run))
    layers = adapters.layer_adapters(run.adapters, run.spec)
    size = run.model.config.vision.image_size
    pixels = np.random.default_rng(0).normal(size=(4, size, size, 3)).astype(np.float32)
    ours = np.asarray(clip.encode_image(run.model, run.frozen, jnp.asarray(pixels),
                                        layers["vision"]))
    theirs = ref.image_features(pixels)
    assert np.abs(ours - theirs).max() < 1e-5 * max(1.0, np.abs(theirs).max())
    names, template = run.classes()
    ids = evaluate.prompt_ids(run.tok, names[:6], template)
    ours = np.asarray(clip.encode_text(run.model, run.frozen, jnp.asarray(ids), layers["text"]))
    theirs = ref.text_features(ids)
    assert np.abs(ours - theirs).max() < 1e-5 * max(1.0, np.abs(theirs).max())
    # The adapters matter: without them the features differ by far more than the tolerance.
    plain = np.asarray(clip.encode_text(run.model, run.frozen, jnp.asarray(ids)))
    assert np.abs(plain - theirs).max() > 1e-3
    # The backbone is a plain Hugging Face CLIP directory our own loader reads back.
    model, params = convert.load_pretrained(str(out))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params,
                                     run.frozen))
    # Files with the permissions of any new file (safetensors and mkdtemp make theirs 0600).
    mask = atomic.umask()
    assert {oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {oct(0o666 & ~mask)}
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~mask)
    err = run_module("adaring_jax.export", f"--workdir={default_run}", f"--out={out}",
                     expect=2).stderr
    assert "give --overwrite to replace it" in err
    # --overwrite replaces an earlier export (and nothing else), leaving nothing beside it.
    (out / "stale.txt").write_text("from an earlier export")
    run_module("adaring_jax.export", f"--workdir={default_run}", f"--out={out}", "--overwrite")
    assert not (out / "stale.txt").exists() and (out / "adapters.safetensors").exists()
    assert sorted(os.listdir(tmp_path)) == ["export"]


@pytest.fixture(scope="module")
def mma_run(tmp_path_factory):
    """An MMA run of the embedded task, cut to 20 steps and 160 test images (in-process)."""
    workdir = tmp_path_factory.mktemp("mma")
    config = fewshot.get_config("method=mma")
    config.optim.steps, config.eval.max_examples = 20, 160
    train.train_and_evaluate(config, str(workdir))
    return workdir


@pytest.fixture(scope="module")
def compressed(mma_run, tmp_path_factory):
    """The MMA run compressed to a rank-2 ring; (its workdir, compress's log)."""
    out = tmp_path_factory.mktemp("compressed") / "r2"
    log = run_module("adaring_jax.compress", f"--workdir={mma_run}", f"--out={out}",
                     "--max_rank=2").stderr
    return out, log


def test_compress_makes_an_adaring_run_that_predict_accepts(mma_run, compressed, tmp_path):
    out, log = compressed
    for family in ("vision/down", "vision/up", "text/down", "text/up", "shared"):
        assert family in log
    results = json.loads((out / "results.json").read_text())
    rec = runs.read(str(out))
    assert rec.method == "adaring" and list(rec.config.adapter.ranks) == [2]
    assert results["trainable_params"] < json.loads(
        (mma_run / "results.json").read_text())["trainable_params"] / 4
    run = runs.load(str(out))
    images = tmp_path / "images"
    labels = _write_split(out, "base", images)
    rows, _ = predict.predict(run, predict.image_files([str(images)]), *run.classes("base"),
                              top_k=1, batch_size=rec.config.eval.batch_size)
    assert _accuracy(rows, labels) == results["adapted"]["base"]


def test_training_starts_from_a_compressed_ring(compressed, tmp_path):
    """adapter.init_from a compressed run: the same spec, trained further."""
    out, _ = compressed
    more = tmp_path / "more"
    config = fewshot.get_config("ranks=2,sites=branch")
    config.adapter.init_from, config.optim.steps, config.eval.max_examples = str(out), 2, 32
    results = train.train_and_evaluate(config, str(more))
    assert results["trainable_params"] == \
        json.loads((out / "results.json").read_text())["trainable_params"]


def test_compress_to_a_relative_error_and_fine_tune(mma_run, tmp_path):
    """--rel_error picks the rank; --finetune_steps trains the ring before evaluating."""
    tuned = tmp_path / "tuned"
    log = run_module("adaring_jax.compress", f"--workdir={mma_run}", f"--out={tuned}",
                     "--rel_error=0.9", "--finetune_steps=2").stderr
    assert "TR-SVD to rank" in log and "HM" in log
    assert json.loads((tuned / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2

