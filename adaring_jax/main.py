r"""Train and evaluate an experiment config.

    python -m adaring_jax.main --config=configs/fewshot.py[:key=value,...] --workdir=DIR \
        [--config.optim.lr=0.002 ...] [--distributed]

Multi-host (Cloud TPU pods, SLURM): launch one process per host with --distributed;
jax.distributed.initialize() finds the coordinator itself there, or takes
--coordinator_address/--num_processes/--process_id.
"""

import jax
from absl import app, flags
from ml_collections import config_flags

from adaring_jax import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, results).",
                               required=True)
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize().")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _DISTRIBUTED.value:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only runs
        kwargs = {"coordinator_address": _COORDINATOR.value,
                  "num_processes": _NUM_PROCESSES.value, "process_id": _PROCESS_ID.value}
        jax.distributed.initialize(**{k: v for k, v in kwargs.items() if v is not None})
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
