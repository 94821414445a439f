"""The persistent XLA compilation cache: on by default in a per-user folder, JAX's own
variable respected, an opt-out, and a second identical run that compiles nothing new and gives
the same results."""

import json
import os
import subprocess
import sys

from adaring_jax import compile_cache
from conftest import ROOT


def test_where_the_cache_lives():
    home = os.path.expanduser("~")
    assert compile_cache.directory({}) == os.path.join(home, ".cache", "adaring-jax", "xla")
    assert compile_cache.directory({"XDG_CACHE_HOME": "/c"}) == "/c/adaring-jax/xla"
    assert compile_cache.directory({"XDG_CACHE_HOME": "/c",
                                    "JAX_COMPILATION_CACHE_DIR": "/j"}) == "/j"
    for off in ("0", "off", "False"):
        assert compile_cache.directory({compile_cache.OFF: off,
                                        "JAX_COMPILATION_CACHE_DIR": "/j"}) is None


def _smoke(tmp_path, name, **env):
    environ = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    environ.update(HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu", XDG_CACHE_HOME=str(tmp_path / "xdg"),
                   **env)
    out = subprocess.run([sys.executable, "-m", "adaring_jax.main",
                          "--config=configs/fewshot.py:smoke", f"--workdir={tmp_path / name}"],
                         cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / name / "results.json") as f:
        results = json.load(f)
    return {k: results[k] for k in ("zeroshot", "adapted")}


def _entries(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_second_run_compiles_nothing_new_and_the_results_are_the_same(tmp_path):
    cache = tmp_path / "xdg" / "adaring-jax" / "xla"
    first = _smoke(tmp_path, "a")
    entries = _entries(cache)
    assert len(entries) >= 3  # the training step and the evaluation programs at least
    assert _smoke(tmp_path, "b") == first
    assert _entries(cache) == entries  # every program came from the cache
    assert _smoke(tmp_path, "c", ADARING_COMPILATION_CACHE="0") == first


def test_opt_out_writes_no_cache(tmp_path):
    _smoke(tmp_path, "a", ADARING_COMPILATION_CACHE="0")
    assert not (tmp_path / "xdg").exists()
