"""Test-wide settings: offline hub, CPU, full-precision matmuls for numerical comparisons, one
XLA compilation cache for the session (this process and every command it starts, unless a test
points them elsewhere); the README's default job, run once per session for the tests that use
its workdir."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# The CPU backend's code generation at optimization level 0, here and in every command a test
# starts: XLA's programs are the same, their machine code less tuned. Compiling is most of a
# smoke run and this takes about a third off it; a run that is mostly execution (the shortened
# default job) takes as long and gives the same digits. Benchmarks and the README's figures run
# at XLA's default level.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
# Every program into the session's compilation cache, however short its compile (the product
# keeps those of 0.2 s or more): the tests start some 60 commands, and each then compiles no
# small program that an earlier one compiled (about 0.8 s less per smoke command).
os.environ.setdefault("ADARING_COMPILATION_CACHE_MIN_SECONDS", "0")
os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""),
                                                 TEST_XLA_FLAGS]))


def xla_flags(devices: int) -> str:
    """The session's XLA flags with `devices` forced host devices (sharding tests)."""
    return f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count={devices}"
# Compiling is most of a smoke run, and many tests run the same smoke programs: in-process
# and in the commands they start, each program compiles once per session. A fresh folder, so
# that a session's timing does not depend on what earlier sessions left.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="adaring-tests-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from adaring_jax import caches  # noqa: E402
from adaring_jax.models import clip  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
caches.enable_compilation_cache()  # as every command does (cli.run)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module: str, *args, expect: int = 0, timeout: int = 900):
    """`python -m module args...` from the repository root; asserts the exit status."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == expect, (out.returncode, out.stdout[-2000:], out.stderr[-3000:])
    return out


# The README's run command shortened for the tests: 1 of its 20 epochs and 1,280 of its
# 25,600 test images (~12 s on 2 cores instead of ~1.7 min; HM 4.5 above zero-shot instead of
# 21); the README's figures are measured with the command as written (docs/internals.md,
# "The tests").
DEFAULT_JOB = ("--config=configs/fewshot.py",)
SHORTENED = ("--config.optim.epochs=1", "--config.data.shapes_size.test=1280")


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """The README's run command, shortened (`SHORTENED`); its workdir."""
    workdir = tmp_path_factory.mktemp("default_run")
    run_module("adaring_jax.main", *DEFAULT_JOB, *SHORTENED, f"--workdir={workdir}")
    return workdir


@pytest.fixture(scope="module")
def tiny():
    """The tiny random CLIP, 4 random images and 3 short prompts (test_adapters,
    test_ring_updates; test_clip has its own)."""
    model = clip.preset("tiny")
    params = clip.init_params(model, jax.random.key(0))
    rng = np.random.default_rng(0)
    pixels = jnp.asarray(rng.standard_normal((4, 32, 32, 3)), jnp.float32)
    ids = np.full((3, 16), 999, np.int32)
    ids[:, 0] = 998
    ids[:, 1:4] = rng.integers(0, 900, (3, 3))
    return model, params, pixels, jnp.asarray(ids)


# The files that take longest (a minute or more of a worker's time; docs/internals.md, "The
# tests"), collected first: pytest-xdist hands out whole files in collection order, so the
# long ones start early and the short ones fill the gaps at the end.
# test_own_data.py after test_tools.py: its README run compiles the default job's programs.
LONGEST_FIRST = ("test_tools.py", "test_experiments.py", "test_train.py", "test_own_data.py",
                 "test_caches.py", "test_benchmarks.py", "test_adapters.py",
                 "test_job_errors.py", "test_ring_updates.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = os.path.basename(str(item.path))
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: within a file, the written order
