"""The research scripts (experiments/) keep running, each on a smoke start: the real-data
reproduction script on generated CoOp-layout datasets (every benchmark layout opens, all jobs
run, an interrupted sweep resumes without redoing finished jobs, the table is written with the
published rows), the compression experiment, the fidelity sweep and the evidence script on
smoke runs."""

import os
import subprocess
import sys

import pytest

from adaring_jax.data import open_split, presets
from tests import coop_tree


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_generated_tree_opens_for_all_eleven_datasets(tmp_path):
    coop_tree.make(str(tmp_path), presets.BENCHMARK, num_classes=3,
                   per_class={"train": 2, "val": 1, "test": 1})
    for name in presets.BENCHMARK:
        for split, n in (("train", 2), ("test", 1)):
            src = open_split(name, split, str(tmp_path))
            assert src.classnames == [f"{name} class {c}" for c in range(3)], name
            assert len(src) == 3 * n, (name, split)
            assert sorted(set(src.labels().tolist())) == [0, 1, 2]


def _sweep(tmp_path, *extra):
    env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu")  # the session's XLA cache
    cmd = [sys.executable, "-m", "experiments.reproduce_base2novel",
           "--datasets=imagenet,fgvc_aircraft", "--seeds=1",
           f"--data_dir={tmp_path / 'data'}", f"--root={tmp_path / 'runs'}",
           "--config_args=arch=tiny,shots=2", "--set=optim.steps=2", "--set=optim.batch_size=4",
           "--set=adapter.start=2", "--set=adapter.end=4", "--set=eval.batch_size=8", *extra]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def interrupted_sweep(tmp_path_factory):
    """The sweep stopped after 1 of its 2 jobs: (its tmp dir, its output, the finished jobs'
    results.json mtimes). The tests below resume it and list what is left."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    coop_tree.make(str(tmp_path / "data"), ["imagenet", "fgvc_aircraft"])
    first = _sweep(tmp_path, "--max_jobs=1")
    runs = tmp_path / "runs" / "adaring"
    stamps = {p.relative_to(runs).parent: p.stat().st_mtime_ns
              for p in runs.glob("*/seed*/results.json")}
    return tmp_path, first, stamps


def test_sweep_stops_after_max_jobs(interrupted_sweep):
    _, first, stamps = interrupted_sweep
    assert "stopping after 1 jobs" in first
    assert [str(p) for p in sorted(stamps)] == ["imagenet/seed1"]


def test_sweep_resumes_and_tabulates(interrupted_sweep):
    tmp_path, _, stamps = interrupted_sweep
    runs = tmp_path / "runs" / "adaring"
    second = _sweep(tmp_path)
    assert second.count("skip ") == 1 and second.count("run ") == 1
    assert "run fgvc_aircraft seed 1" in second
    for p, stamp in stamps.items():  # finished jobs were not redone
        assert os.stat(runs / p / "results.json").st_mtime_ns == stamp
    table = (runs / "table.md").read_text()
    # ImageNet's few-shot draw is upstream's only with upstream's cache (none here): flagged.
    for name, seeds in (("imagenet", "| 1/1 (1 not comparable) |"), ("fgvc_aircraft", "| 1/1 |")):
        assert f"| {name} |" in table and table.split(f"| {name} |")[1].split("\n")[0].endswith(
            seeds)
    assert "| **mean** |" in table
    assert "| MMA | 83.20 | 76.80 | 79.87 | 674,560 |" in table


def test_sweep_lists_the_commands_of_unfinished_jobs(interrupted_sweep):
    tmp_path, _, _ = interrupted_sweep
    listing = _sweep(tmp_path, "--print_commands", "--seeds=3")
    assert listing.count("adaring_jax.main") == 2 and "seed=3" in listing


def test_compression_experiment_runs_and_resumes(tmp_path):
    args = [sys.executable, "-m", "experiments.compress_mma", "--config_args=smoke",
            "--ranks=1,2", "--seeds=1", "--finetune_steps=2", f"--root={tmp_path}/runs",
            f"--out={tmp_path}/c"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    table = (tmp_path / "c.md").read_text()
    assert "| 1 |" in table and "| 2 |" in table and "| MMA (dense) | 15,840 |" in table
    # A second invocation finds every run finished and only rewrites the table.
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and (tmp_path / "c.md").read_text() == table
    assert "step " not in again.stderr


def _fidelity(*args):
    out = subprocess.run([sys.executable, "-m", "experiments.fidelity_sweep", *map(str, args)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1"))
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def fidelity_sweep(tmp_path_factory):
    """Two trials of the sweep on smoke runs, one of them the warm start from MMA; its folder."""
    top = tmp_path_factory.mktemp("fidelity")
    _fidelity("--config_args=smoke", "--seeds=1", "--trials=ring_warm_mma,ring_nobias_2+5",
              f"--root={top}/runs", f"--out={top}/sweep")
    return top


def test_fidelity_sweep_keeps_the_budget_and_runs_a_warm_start(fidelity_sweep):
    rows = [line.split() for line in _fidelity("--list").splitlines() if line.strip()]
    ring = [int(r[2].replace(",", "")) for r in rows if r[1] == "adaring"]
    mma = [int(r[2].replace(",", "")) for r in rows if r[0] == "mma_default"]
    assert len(ring) == len(rows) - len(ring) and max(ring) <= 0.1 * mma[0]
    table = (fidelity_sweep / "sweep.md").read_text()
    assert "| ring_warm_mma | adaring |" in table and (fidelity_sweep / "sweep.png").exists()
    # The warm start trained the dense run it compresses first.
    assert (fidelity_sweep / "runs" / "mma_default" / "seed1" / "results.json").exists()


def test_parameter_curve_plans_every_point_and_reuses_the_sweeps(fidelity_sweep):
    # Every point, in the report's order: AdaRing rows first, then MMA's, each by growing
    # parameter count; over the budget too (the plan only: no runs).
    plan = [r.split() for r in _fidelity("--config_args=smoke", "--curve", "--list").splitlines()
            if r.strip()]
    names = [r[0] for r in plan]
    assert sorted(names) == sorted(["ring_single4", "ring_default", "ring_rank8", "ring_rank16",
                                    "mma_hidden3", "mma_hidden8", "mma_hidden16", "mma_default"])
    key = [(r[1] != "adaring", int(r[2].replace(",", ""))) for r in plan]
    assert key == sorted(key)
    # A run of two points: one of the sweep's, read back (not rerun), and one of its own.
    reused = fidelity_sweep / "runs" / "mma_default" / "seed1" / "results.json"
    stamp = reused.stat().st_mtime_ns
    _fidelity("--config_args=smoke", "--seeds=1", "--curve", "--trials=mma_default,ring_rank8",
              f"--root={fidelity_sweep}/runs", f"--out={fidelity_sweep}/curve")
    assert reused.stat().st_mtime_ns == stamp
    rows = [r.split(" | ") for r in (fidelity_sweep / "curve.md").read_text().splitlines()
            if r.startswith("| ring_") or r.startswith("| mma_")]
    assert [r[0][2:] for r in rows] == ["ring_rank8", "mma_default"]
    assert (fidelity_sweep / "curve.png").exists()


def test_evidence_script_runs_a_zero_shot_and_an_adapted_variant(tmp_path):
    # The default job's variants, cut to 2 training steps and 64 evaluation images (~20 s).
    out = subprocess.run(
        [sys.executable, "-m", "experiments.embedded_evidence", "--variants=zeroshot,single",
         "--seeds=1", "--set=optim.steps=2", "--set=eval.max_examples=64",
         f"--root={tmp_path}/runs", f"--out={tmp_path}/ev"], cwd=ROOT, capture_output=True,
        text=True, timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1"))
    assert out.returncode == 0, out.stderr[-2000:]
    table = (tmp_path / "ev.md").read_text()
    assert "| zero-shot | - | 0 |" in table and "| AdaRing single (rank " in table
    assert (tmp_path / "ev.png").exists()
    assert (tmp_path / "runs" / "single" / "seed1" / "results.json").exists()


def _suite(tmp_path, *extra):
    out = subprocess.run(
        [sys.executable, "-m", "experiments.suite", "--smoke", "--seeds=1",
         "--parts=base2novel,front,banks", "--tasks=shapes_colour", "--methods=adaring",
         "--front=adaring_r2", f"--root={tmp_path / 'runs'}", f"--out={tmp_path / 'suite'}",
         *extra], cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu"),
        capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_suite_runs_tabulates_and_resumes(tmp_path):
    plan = _suite(tmp_path, "--plan")
    assert "0 of 3 runs finished" in plan.stdout  # zero-shot, AdaRing, AdaRing branch rank 2
    _suite(tmp_path)
    report = (tmp_path / "suite.md").read_text()
    assert "3 of 3 runs finished" in report
    for heading in ("## Base-to-novel HM per task", "## The front",
                    "## Heterogeneous banks per task (HM)"):
        assert heading in report
    table = report.split("## Base-to-novel HM per task")[1].split("##")[0]
    assert "| AdaRing branch (rank 2) | 1,020 | " in table and "+-" not in table  # one seed: values
    assert "| AdaRing branch (rank 2) | 1,020 | " in report.split("## The front")[1]
    assert (tmp_path / "suite_front.png").stat().st_size > 1000
    results = sorted((tmp_path / "runs").glob("base2novel/shapes_colour/*/seed1/results.json"))
    assert [p.parent.parent.name for p in results] == ["adaring_lr0.01", "adaring_r2_lr0.01",
                                                       "zeroshot"]
    stamps = [p.stat().st_mtime_ns for p in results]
    again = _suite(tmp_path)  # every run finished: read back, none redone
    assert "0.0 min of runs this call" in again.stdout
    assert [p.stat().st_mtime_ns for p in results] == stamps
