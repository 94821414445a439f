"""One run identity: every config field not on the deny-list is compared, a finished or
interrupted workdir of another identity is refused before any effect, a finished identical
rerun changes no file, and the commands that read a finished run check its config.json."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from adaring_jax.errors import UserError
from adaring_jax.job import identity, runs, train
from configs import fewshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Valid alternatives for fields whose values are names (anything else: a changed number, flag,
# or an invalid name, which validation refuses naming the field just as well).
ALTERNATIVES = {"method": "mma", "protocol": "fewshot", "data.prompt": "coop",
                "data.zeroshot_prompt": "mma", "data.shapes_domain": "pretrain",
                "model.arch": "tiny-gelu", "model.dtype": "float32", "optim.name": "sgd",
                "optim.schedule": "epoch_cosine", "adapter.bias": "shared", "job": "pretrain"}


def _snapshot(workdir: str) -> dict[str, str]:
    out = {}
    for base, _, files in os.walk(workdir):
        for f in files:
            path = os.path.join(base, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, workdir)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.5
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, (tuple, list)):
        return tuple(value)[:-1] if len(value) > 1 else (*value, *(value or ("shapes",)))
    raise TypeError(value)


def _with(config, field: str, value):
    config = config.copy_and_resolve_references()
    config.unlock()
    *parents, leaf = field.split(".")
    node = config
    for name in parents:
        node = node[name]
    node[leaf] = value
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("finished"))
    config = fewshot.get_config("smoke")
    train.train_and_evaluate(config, workdir)
    return config, workdir


def test_identity_is_the_whole_config_less_the_deny_list():
    config = fewshot.get_config("smoke")
    ident = identity.of(config)
    flat = identity._flatten(json.loads(config.to_json()))
    assert set(ident) == set(flat) - set(identity.NOT_IDENTITY)
    assert set(identity.NOT_IDENTITY) <= set(flat)  # every denied field exists
    assert {"data.crop_scale", "eval.max_examples", "model.init_seed", "data.shapes_domain",
            "data.data_dir", "data.min_usable", "model.dtype", "adapter.ranks"} <= set(ident)
    # Class buckets change a trained run's last bits (other summation orders, compounded over
    # the steps), as model.fast_step and model.remat do: a resumed run must keep the setting.
    assert {"data.class_bucket", "model.fast_step", "model.remat"} <= set(ident)


@pytest.mark.parametrize("state", ["finished", "interrupted"])
def test_every_changed_field_is_refused_and_nothing_changes(finished, tmp_path, state):
    config, source = finished
    workdir = str(tmp_path / "run")
    shutil.copytree(source, workdir)
    if state == "interrupted":
        os.remove(os.path.join(workdir, "results.json"))
        os.remove(os.path.join(workdir, "results.md"))
    before = _snapshot(workdir)
    fields = list(identity.of(config))
    assert len(fields) > 40
    for field in fields:
        value = identity.of(config)[field]
        new = ALTERNATIVES.get(field, _changed(value))
        if new == value:
            new = _changed(value)
        with pytest.raises(UserError) as err:
            train.train_and_evaluate(_with(config, field, new), workdir)
        assert field in str(err.value), (field, str(err.value))
        assert _snapshot(workdir) == before, field


def test_a_changed_field_exits_2_naming_it(finished, tmp_path):
    _, source = finished
    workdir = str(tmp_path / "run")
    shutil.copytree(source, workdir)
    before = _snapshot(workdir)
    proc = subprocess.run(
        [sys.executable, "-m", "adaring_jax.main", "--config=configs/fewshot.py:smoke",
         f"--workdir={workdir}", "--config.data.crop_scale=0.5"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "data.crop_scale: the run has 0.08, this config has 0.5" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _snapshot(workdir) == before


def test_finished_identical_rerun_changes_no_file(finished, tmp_path, capsys):
    config, source = finished
    workdir = str(tmp_path / "run")
    shutil.copytree(source, workdir)
    before = _snapshot(workdir)
    mtimes = {f: os.stat(os.path.join(workdir, f)).st_mtime_ns for f in before}
    results = train.train_and_evaluate(config, workdir)
    assert results == json.load(open(os.path.join(source, "results.json")))
    assert "| adapted |" in capsys.readouterr().out
    assert _snapshot(workdir) == before
    assert {f: os.stat(os.path.join(workdir, f)).st_mtime_ns for f in before} == mtimes
    # Fields on the deny-list cannot change a result: a finished run is reported as it is.
    for field in identity.NOT_IDENTITY:
        value = identity._flatten(json.loads(config.to_json()))[field]
        other = not value if isinstance(value, bool) else value + 1
        train.train_and_evaluate(_with(config, field, other), workdir)
    assert _snapshot(workdir) == before


def test_a_run_recorded_without_a_field_is_another_experiment(finished, tmp_path):
    """A run recorded before a config field existed (here: model.fast_step) is refused with
    the usual message, naming the field as absent in the run; nothing is written."""
    config, source = finished
    workdir = str(tmp_path / "run")
    shutil.copytree(source, workdir)
    path = os.path.join(workdir, "experiment.json")
    saved = json.load(open(path))
    record = saved.get("identity", saved)
    assert record.pop("model.fast_step") is True
    json.dump(saved, open(path, "w"))
    before = _snapshot(workdir)
    with pytest.raises(UserError, match="model.fast_step: the run has <absent>, this config "
                                        "has true"):
        train.train_and_evaluate(config, workdir)
    assert _snapshot(workdir) == before


def test_a_hand_edited_config_json_is_refused(finished, tmp_path):
    _, source = finished
    workdir = str(tmp_path / "run")
    shutil.copytree(source, workdir)
    assert runs.read(workdir).method == "adaring"
    path = os.path.join(workdir, "config.json")
    recorded = json.load(open(path))
    recorded["data"]["shapes_domain"] = "pretrain"
    json.dump(recorded, open(path, "w"))
    with pytest.raises(runs.RunError, match="data.shapes_domain: the run has \"target\", this "
                                            "config has \"pretrain\""):
        runs.read(workdir)
    recorded["data"]["num_threads"] = 1  # not part of the identity: accepted
    recorded["data"]["shapes_domain"] = "target"
    json.dump(recorded, open(path, "w"))
    assert runs.read(workdir).config.data.num_threads == 1
