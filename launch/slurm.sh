#!/usr/bin/env bash
# Run an adaring-jax experiment on a SLURM GPU cluster: one process per host, all GPUs of a host
# in that process. Submit with sbatch, passing the main's arguments after the script:
#
#   sbatch --nodes=2 --gpus-per-node=8 launch/slurm.sh \
#       --config=configs/cross_dataset.py:checkpoint=/shared/clip-vit-b16 \
#       --config.data.data_dir=/shared/data --workdir=/shared/runs/xd/seed1
#
# jax.distributed.initialize() reads the coordinator, process count and process id from SLURM's
# environment; the workdir must be on a filesystem every node sees. Preemption (SIGTERM from
# `scancel` or the scheduler) makes the job save a checkpoint and exit; resubmitting the same
# command resumes it. Set VENV to the environment made by the README's install command.
#SBATCH --job-name=adaring
#SBATCH --ntasks-per-node=1
#SBATCH --signal=TERM@120
#SBATCH --output=slurm-%j.out
set -euo pipefail

venv=${VENV:-$HOME/adaring-jax/.venv}
repo=${REPO:-$(cd "$(dirname "$0")/.." && pwd)}
cmd=(srun --kill-on-bad-exit=1 bash -c
     "cd $(printf %q "$repo") && . $(printf %q "$venv")/bin/activate && exec python -m adaring_jax.main --distributed$(printf ' %q' "$@")")
if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "${cmd[@]}"; printf '\n'; else "${cmd[@]}"; fi
