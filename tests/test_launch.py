"""Launchers compose the right commands (DRY_RUN=1 prints instead of running gcloud/srun)."""

import os
import subprocess

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
