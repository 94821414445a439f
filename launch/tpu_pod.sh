#!/usr/bin/env bash
# Run an adaring-jax experiment on a Cloud TPU VM or pod slice: create, install, run on every
# worker, and clean up, with gcloud.
#
#   launch/tpu_pod.sh create  NAME ZONE ACCELERATOR [VERSION]   # e.g. my-pod us-central2-b v4-32
#   launch/tpu_pod.sh install NAME ZONE                          # copy this repo, pip install
#   launch/tpu_pod.sh run     NAME ZONE -- \
#       --config=configs/base2novel.py:dataset=dtd,checkpoint=openai/clip-vit-base-patch16 \
#                                 --config.data.data_dir=/mnt/data --workdir=/mnt/runs/x
#   launch/tpu_pod.sh delete  NAME ZONE
#
# `run` starts `python -m adaring_jax.main --distributed ...` on all workers at once (one process
# per host; jax.distributed.initialize() finds the coordinator on Cloud TPU by itself). On a pod
# the workdir and data dir must be paths every host sees (a gcsfuse or Filestore mount): the
# checkpoints are written jointly by all hosts.
# DRY_RUN=1 prints the gcloud commands instead of running them.
set -euo pipefail

gc() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then printf 'gcloud'; printf ' %q' "$@"; printf '\n'; else gcloud "$@"; fi
}

usage() { sed -n '2,18p' "$0"; exit 2; }
[[ $# -ge 3 ]] || usage
cmd=$1 name=$2 zone=$3
shift 3
repo=$(cd "$(dirname "$0")/.." && pwd)

case "$cmd" in
  create)
    [[ $# -ge 1 ]] || usage
    accel=$1 version=${2:-tpu-ubuntu2204-base}
    gc compute tpus tpu-vm create "$name" --zone="$zone" --accelerator-type="$accel" \
      --version="$version"
    ;;
  install)
    tarball=/tmp/adaring-jax.tgz
    if [[ "${DRY_RUN:-0}" != 1 ]]; then
      git -C "$repo" archive --format=tar.gz -o "$tarball" HEAD
    fi
    gc compute tpus tpu-vm scp "$tarball" "$name:~/adaring-jax.tgz" --zone="$zone" --worker=all
    gc compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command \
      "mkdir -p ~/adaring-jax && tar xzf ~/adaring-jax.tgz -C ~/adaring-jax && cd ~/adaring-jax && python3 -m venv .venv && . .venv/bin/activate && pip install -q -U 'jax[tpu]' && pip install -q -r requirements.txt"
    ;;
  run)
    [[ "${1:-}" == "--" ]] && shift
    args=$(printf ' %q' "$@")
    gc compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command \
      "cd ~/adaring-jax && . .venv/bin/activate && python -m adaring_jax.main --distributed$args"
    ;;
  delete)
    gc compute tpus tpu-vm delete "$name" --zone="$zone" --quiet
    ;;
  *) usage ;;
esac
