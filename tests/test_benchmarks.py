"""The benchmarks keep running: step_time.py on a tiny config, compare_torch.py's FLOP count
(its PyTorch reference needs torch, which the tests never install), the input pipeline, and the
compression experiment on smoke runs."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_step_time_times_methods_alternately():
    out = subprocess.run(
        [sys.executable, "benchmarks/step_time.py", "--config=configs/fewshot.py:arch=tiny,smoke",
         "--batch=8", "--classes=16", "--repeats=1", "--methods=adaring,mma"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "adaring: step" in out.stdout and "x the adaring step" in out.stdout


def test_analytic_flops_of_a_vit_b16_forward():
    # In a subprocess: the benchmark modules define absl flags that other modules define too.
    check = """
import compare_torch
per_image = 12 * compare_torch.layer_flops(197, 768, 3072)  # ViT-B/16 vision forward
assert abs(per_image / 34.9e9 - 1) < 1e-3, per_image  # ~35 GFLOP per image
# MMA's step: all 12 vision blocks forward, backward from block 5 (one forward each).
step = compare_torch.analytic_flops("vit_b16", 1, 0, 77, 4, False, False)
assert abs(step / (per_image * 20 / 12) - 1) < 1e-9, step
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", check], cwd=os.path.join(ROOT, "benchmarks"),
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_pipeline_speed_runs_on_a_generated_folder(tmp_path):
    out = subprocess.run(
        [sys.executable, "benchmarks/pipeline_speed.py", "--images=48", "--threads=1,2",
         "--batch=16", f"--root={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "1 threads:" in out.stdout and "2 threads:" in out.stdout


def test_compression_experiment_runs_and_resumes(tmp_path):
    args = [sys.executable, "benchmarks/compress_mma.py", "--config_args=smoke", "--ranks=1,2",
            "--seeds=1", "--finetune_steps=2", f"--root={tmp_path}/runs", f"--out={tmp_path}/c"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    table = (tmp_path / "c.md").read_text()
    assert "| 1 |" in table and "| 2 |" in table and "| MMA (dense) | 15,840 |" in table
    # A second invocation finds every run finished and only rewrites the table.
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and (tmp_path / "c.md").read_text() == table
    assert "step " not in again.stderr


def test_fidelity_sweep_keeps_the_budget_and_runs_a_warm_start(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
    listed = subprocess.run([sys.executable, "benchmarks/fidelity_sweep.py", "--list"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env=env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = [line.split() for line in listed.stdout.splitlines() if line.strip()]
    ring = [int(r[2].replace(",", "")) for r in rows if r[1] == "adaring"]
    mma = [int(r[2].replace(",", "")) for r in rows if r[0] == "mma_default"]
    assert len(ring) == len(rows) - len(ring) and max(ring) <= 0.1 * mma[0]
    out = subprocess.run(
        [sys.executable, "benchmarks/fidelity_sweep.py", "--config_args=smoke", "--seeds=1",
         "--trials=ring_warm_mma,ring_nobias_2+5", f"--root={tmp_path}/runs",
         f"--out={tmp_path}/sweep"], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    table = (tmp_path / "sweep.md").read_text()
    assert "| ring_warm_mma | adaring |" in table and (tmp_path / "sweep.png").exists()
    # The warm start trained the dense run it compresses first.
    assert (tmp_path / "runs" / "mma_default" / "seed1" / "results.json").exists()
    # The parameter curve reuses the sweep's points and adds its own, over the budget too.
    curve = subprocess.run(
        [sys.executable, "benchmarks/fidelity_sweep.py", "--config_args=smoke", "--seeds=1",
         "--curve", f"--root={tmp_path}/runs", f"--out={tmp_path}/curve"], cwd=ROOT,
        capture_output=True, text=True, timeout=600, env=env)
    assert curve.returncode == 0, curve.stderr[-2000:]
    rows = [r.split(" | ") for r in (tmp_path / "curve.md").read_text().splitlines()
            if r.startswith("| ring_") or r.startswith("| mma_")]
    names = [r[0][2:] for r in rows]
    assert sorted(names) == sorted(["ring_single4", "ring_default", "ring_rank8", "ring_rank16",
                                    "mma_hidden3", "mma_hidden8", "mma_hidden16", "mma_default"])
    # AdaRing rows first, then MMA's, each by growing parameter count.
    key = [(not n.startswith("ring_"), int(r[2].replace(",", ""))) for n, r in zip(names, rows)]
    assert key == sorted(key)
    assert (tmp_path / "curve.png").exists()
