"""The speed benchmarks keep running: step_time on a tiny config, compare_torch's FLOP count
(its PyTorch reference needs torch, which the tests never install), and the input pipeline.
The research scripts (experiments/) are tested in test_experiments.py."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_step_time_times_methods_alternately():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.step_time",
         "--config=configs/fewshot.py:arch=tiny,smoke", "--batch=8", "--classes=16",
         "--repeats=1", "--methods=adaring,mma"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "adaring: step" in out.stdout and "x the adaring step" in out.stdout


def test_analytic_flops_of_a_vit_b16_forward():
    # In a subprocess: the benchmark modules define absl flags that other modules define too.
    check = """
from benchmarks import compare_torch
per_image = 12 * compare_torch.layer_flops(197, 768, 3072)  # ViT-B/16 vision forward
assert abs(per_image / 34.9e9 - 1) < 1e-3, per_image  # ~35 GFLOP per image
# MMA's step: all 12 vision blocks forward, backward from block 5 (one forward each).
step = compare_torch.analytic_flops("vit_b16", 1, 0, 77, 4, False, False)
assert abs(step / (per_image * 20 / 12) - 1) < 1e-9, step
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_pipeline_speed_runs_on_a_generated_folder(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.pipeline_speed", "--images=48", "--threads=1,2",
         "--batch=16", f"--root={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "1 threads:" in out.stdout and "2 threads:" in out.stdout


def test_folder_listing_benchmark_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks.folder_listing", "--files=2000",
                          "--classes=20", "--repeats=1", f"--root={tmp_path}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "listed and split 2,000 files in 20 classes" in out.stdout


def test_table_benchmark_runs_off_and_warm_with_the_same_results(tmp_path):
    # One zero-shot run per pass (training runs go through the same code, timed in the
    # other benchmark tests), four passes: before, off, cold, warm. The before pass runs the
    # code of the commit before the caches: its zero-shot numbers must equal today's.
    out = subprocess.run([sys.executable, "-m", "benchmarks.table_time", "--smoke", "--seeds=1",
                          "--method=zeroshot", "--nozeroshot_row", f"--root={tmp_path}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-2000:]
    # The 'before' pass ran the code of the commit before the caches, from git history.
    assert "| before (5912206) |" in out.stdout
    assert "| off |" in out.stdout and "| warm |" in out.stdout
    assert "results identical in every pass" in out.stdout
    # The warm pass read every zero-shot accuracy from the cache; the off pass wrote none.
    assert len(list((tmp_path / "caches" / "zeroshot").rglob("*.json"))) == 2


def test_step_profile_splits_a_step_by_operation_kind():
    out = subprocess.run([sys.executable, "-m", "benchmarks.step_profile",
                          "--config=configs/fewshot.py:arch=tiny,smoke", "--batch=8",
                          "--classes=16", "--steps=2"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in out.stdout.splitlines()
            if line.startswith("| ") and "%" in line}
    assert {"dot", "loop", "memory", "elementwise", "runtime", "all"} <= rows.keys()
    assert float(rows["dot"].split("|")[2]) > 0  # the trace was read: matmuls took time


def test_operation_kinds_of_xla_cpu_spans():
    check = """
from benchmarks.step_profile import kind_of
cases = {"ynn_fusion.33": "dot", "dot.4": "dot", "while.209": "loop", "copy.997": "memory",
         "wrapped_broadcast.21": "memory", "bitcast_dynamic-update-slice_fusion.2": "memory",
         "dynamic-slice_bitcast_fusion": "memory", "add_divide_fusion.1": "elementwise",
         "multiply_add_fusion": "elementwise", "ThunkExecutor::Execute": "runtime",
         "ThunkExecutor::Execute (wait for completion)": None}
wrong = {k: kind_of(k) for k, v in cases.items() if kind_of(k) != v}
assert not wrong, wrong
"""
    out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def _accelerator(tmp_path, sections):
    out = subprocess.run([sys.executable, "-m", "benchmarks.accelerator", "--smoke",
                          f"--sections={sections}", f"--root={tmp_path}",
                          f"--json={tmp_path / 'a.json'}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-2000:]
    with open(tmp_path / "a.json") as f:
        return out.stdout, json.load(f)


def test_accelerator_benchmark_prints_its_step_tables_at_smoke_size(tmp_path):
    stdout, _ = _accelerator(tmp_path, "ceiling,steps,torch")
    lines = stdout.splitlines()
    assert any(line.startswith("| float32 256^3 | ") for line in lines), stdout
    for method in ("adaring", "mma"):  # ms, TFLOP/s (share of the f32 ceiling), compile s
        row = next(line for line in lines if line.startswith(f"| ours, {method}, auto"))
        ms, tflops, compile_s = (c.strip() for c in row.split("|")[2:5])
        assert float(ms) > 0 and "%)" in tflops and float(compile_s) > 0, row
    assert any(line.startswith("compile seconds (tiny, batch 8, 16 classes, float32, one "
                               "process): adaring ") for line in lines), stdout


def test_accelerator_benchmark_times_a_run_cold_and_warm_at_smoke_size(tmp_path):
    stdout, numbers = _accelerator(tmp_path, "b2n")
    lines = stdout.splitlines()
    for run in ("cold", "warm"):  # the whole run's phases from its results.json
        row = next(line for line in lines if line.startswith(f"| {run} cache | "))
        assert all(float(c) >= 0 for c in row.split("|")[2:9]), row
    assert "evaluation apart from its compile (warm): " in stdout
    assert "results equal: True" in stdout
    assert numbers["b2n"]["warm"]["first_step_seconds"] < numbers["b2n"]["cold"][
        "first_step_seconds"]  # the warm run's step came from the compile cache


def test_compile_seconds_are_the_median_of_fresh_compiles(capsys):
    import jax
    from benchmarks import accelerator, train_step
    calls = []
    step = jax.jit(lambda s, a: (calls.append(1), s + a)[1])  # traced once per compile
    p = {"step": step, "state": 1.0, "args": (2.0,)}
    seconds = [train_step.recompile_seconds(p) for _ in range(2)]
    assert len(calls) == 2 and all(s > 0 for s in seconds)  # traced again: caches cleared
    rows = [{"method": m, "dtype": "auto", "batch": 8, "classes": 100, "compute_dtype": "float32",
             "compile_s": s, "compile_runs": runs}
            for m, s, runs in (("adaring", 10.0, [9.0, 10.0, 12.0]), ("mma", 8.0, [8.0, 7.0, 9.0]))]
    accelerator.print_compile(rows, "vit_b16")
    assert ("adaring 10.0 (median of 3: 9.0-12.0), mma 8.0 (median of 3: 7.0-9.0): 1.25x"
            in capsys.readouterr().out)
