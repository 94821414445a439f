"""The training job end to end: smoke run, 8 devices == 1, SIGKILL resume == uninterrupted,
SIGTERM checkpoint, two processes == one, and bad values stopped before any compute."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import conftest
from adaring_jax.job import train
from adaring_jax.job import workdir as workdir_module
from configs import base2novel, fewshot


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "--config=configs/fewshot.py:smoke"
# Every run here checkpoints every step (the smoke run's 6 steps), so that a kill lands
# mid-training with a checkpoint behind it; checkpointing does not change the numbers.
LONGER = ("--config.checkpoint_every=1",)


def _env(devices=1, cache=True):
    """Single-process runs share the session's compilation cache (conftest): the resumed and
    preempted runs compile the same programs as the reference."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = conftest.xla_flags(devices)
    if not cache:
        env["ADARING_COMPILATION_CACHE"] = "0"
    return env


def _main(workdir, *extra, devices=1, config=SMOKE):
    return [sys.executable, "-m", "adaring_jax.main", config, f"--workdir={workdir}", *extra]


def _run(workdir, *extra, devices=1, config=SMOKE):
    out = subprocess.run(_main(workdir, *LONGER, *extra, config=config), cwd=ROOT,
                         env=_env(devices),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f)]


def _adapters(workdir, step=None):
    """The adapter params of a checkpoint, read back without a template."""
    root = os.path.join(workdir, "checkpoints")
    step = step or max(int(d) for d in os.listdir(root) if d.isdigit())
    path = os.path.join(root, str(step), "default")
    reader = ocp.StandardCheckpointer()
    meta = reader.metadata(path).item_metadata.tree
    # Onto this process's one device, whatever mesh wrote it.
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    template = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta)
    return reader.restore(path, template)["adapters"]


def _assert_trees_close(a, b, tol):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted smoke run on one device: the baseline every other run must match."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    start = time.monotonic()
    out = _run(workdir)
    print(f"smoke run: {time.monotonic() - start:.1f} s")  # not asserted: timing varies
    return workdir, out


def test_smoke_run_writes_results_metrics_and_checkpoint(reference):
    workdir, out = reference
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["protocol"] == "base2novel"  # fewshot.py's default protocol
    assert set(results["zeroshot"]) == set(results["adapted"]) == {"base", "novel", "hm"}
    assert results["trainable_params"] > 0 and results["steps"] == 6
    assert 0 <= results["adapted"]["hm"] <= 100
    assert [s for s, _ in _losses(workdir)] == [2, 4, 6]
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    steps = {d for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()}
    assert steps == {"5", "6"}  # the last max_to_keep=2 kept
    assert os.path.exists(os.path.join(workdir, "draw.json"))
    assert "| adapted |" in open(os.path.join(workdir, "results.md")).read()


def test_eight_devices_match_one(reference, tmp_path):
    workdir, _ = reference
    _run(str(tmp_path), devices=8)
    np.testing.assert_allclose([l for _, l in _losses(str(tmp_path))],
                               [l for _, l in _losses(workdir)], rtol=1e-4)
    _assert_trees_close(_adapters(str(tmp_path)), _adapters(workdir), 1e-4)


def _wait_for_checkpoint(workdir, step, proc, timeout=240, poll=0.02):
    root = os.path.join(workdir, "checkpoints")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.isdir(os.path.join(root, str(step))):
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended before checkpoint {step}: {proc.stderr.read()[-2000:]}")
        time.sleep(poll)
    pytest.fail(f"no checkpoint {step} after {timeout}s")


def test_sigkill_then_restart_matches_uninterrupted(reference, tmp_path):
    workdir, _ = reference
    proc = subprocess.Popen(_main(str(tmp_path), *LONGER), cwd=ROOT, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_checkpoint(str(tmp_path), 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = _run(str(tmp_path))
    b = json.load(open(os.path.join(str(tmp_path), "results.json")))
    assert f"resumed from step {b['resumed_from']} of 6" in out.stderr
    assert 2 <= b["resumed_from"] < 6  # the kill landed mid-training
    steps = [s for s, _ in _losses(str(tmp_path))]
    assert steps == sorted(set(steps))  # re-run steps are not written twice
    _assert_trees_close(_adapters(str(tmp_path), 6), _adapters(workdir, 6), 1e-6)
    a = json.load(open(os.path.join(workdir, "results.json")))
    assert a["adapted"] == b["adapted"] and a["zeroshot"] == b["zeroshot"]


def test_sigterm_leaves_a_checkpoint_at_the_current_step(tmp_path):
    proc = subprocess.Popen(_main(str(tmp_path), "--config.optim.steps=400",
                                  "--config.checkpoint_every=1000"),
                            cwd=ROOT, env=_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    metrics_path = os.path.join(str(tmp_path), "metrics.jsonl")
    deadline = time.monotonic() + 240
    while not (os.path.exists(metrics_path) and os.path.getsize(metrics_path)):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()[-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-2000:]  # stopped, not finished: a distinct status
    assert err.strip().splitlines()[-1].startswith("stopped: stopped by SIGTERM at step")
    saved = [line for line in err.splitlines() if "SIGTERM: saved a checkpoint at step" in line]
    assert saved, err[-2000:]
    step = int(saved[0].split("at step ")[1].split()[0])
    assert 0 < step < 400
    assert os.path.isdir(os.path.join(str(tmp_path), "checkpoints", str(step)))
    assert not os.path.exists(os.path.join(str(tmp_path), "results.json"))


def test_ctrl_c_while_saving_is_one_line_and_resumes(reference, tmp_path):
    """Ctrl-C lands while a checkpoint is being saved (every step saves): one line, exit 130,
    no Orbax thread traceback, and the rerun resumes to the uninterrupted result."""
    workdir, _ = reference
    # Python's Ctrl-C handler in the child even when this process ignores SIGINT (a CI job in
    # the background): set in the child itself (a preexec_fn would fork a threaded process).
    argv = _main(str(tmp_path), *LONGER)
    wrapper = ("import runpy, signal, sys; signal.signal(signal.SIGINT, "
               f"signal.default_int_handler); sys.argv = {['main', *argv[3:]]!r}; "
               "runpy.run_module('adaring_jax.main', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", wrapper], cwd=ROOT, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_checkpoint(str(tmp_path), 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.fail("the run ended before Ctrl-C arrived; make it longer")
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Exception in thread" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted (Ctrl-C)")
    _run(str(tmp_path))
    _assert_trees_close(_adapters(str(tmp_path), 6), _adapters(workdir, 6), 1e-6)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(reference, tmp_path):
    workdir, _ = reference
    port = _free_port()
    procs = [subprocess.Popen(
        # The smoke recipe's checkpoint interval (3), not LONGER's 1: a checkpoint is two
        # processes writing one Orbax step, and where they land does not change the numbers.
        _main(str(tmp_path), "--distributed", f"--coordinator_address=127.0.0.1:{port}",
              "--num_processes=2", f"--process_id={i}"),
        cwd=ROOT, env=_env(devices=2, cache=False), text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    np.testing.assert_allclose([l for _, l in _losses(str(tmp_path))],
                               [l for _, l in _losses(workdir)], rtol=1e-4)
    _assert_trees_close(_adapters(str(tmp_path)), _adapters(workdir), 1e-4)
    a = json.load(open(os.path.join(workdir, "results.json")))
    b = json.load(open(os.path.join(str(tmp_path), "results.json")))
    assert a["adapted"] == b["adapted"]


@pytest.mark.parametrize("field,value,message", [
    ("method", "lora", "config.method='lora' is not valid; choose from: zeroshot, mma, adaring"),
    ("data.dataset", "cifar", "config.data.dataset='cifar' is not valid; choose from: imagenet"),
    ("model.arch", "ViT-H/14", "config.model.arch='ViT-H/14' is not valid; choose from: ViT-B"),
    ("data.shots", 0, "config.data.shots=0 must be an integer >= 1"),
    ("protocol", "zero", "config.protocol='zero' is not valid; choose from: fewshot"),
])
def test_bad_values_stop_before_compute(tmp_path, field, value, message):
    config = fewshot.get_config("smoke")
    config.unlock()
    *parents, leaf = field.split(".")
    node = config
    for name in parents:
        node = getattr(node, name)
    setattr(node, leaf, value)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train.train_and_evaluate(config, str(tmp_path))
    assert not os.listdir(tmp_path)  # nothing written, nothing computed


def test_workdir_of_another_experiment_is_refused(reference, tmp_path):
    workdir, _ = reference
    config = fewshot.get_config("smoke,seed=2")
    with pytest.raises(workdir_module.WorkdirError, match="seed: the run has 1, this config has 2"):
        train.train_and_evaluate(config, workdir)


def test_base2novel_smoke_reports_base_novel_and_hm(tmp_path):
    config = base2novel.get_config("smoke")
    results = train.train_and_evaluate(config, str(tmp_path))
    for kind in ("zeroshot", "adapted"):
        assert set(results[kind]) == {"base", "novel", "hm"}
        b, n = results[kind]["base"], results[kind]["novel"]
        assert results[kind]["hm"] == pytest.approx(0 if b + n == 0 else 2 * b * n / (b + n),
                                                     abs=0.01)
