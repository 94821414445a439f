r"""Run an experiment config: adaptation (fewshot, base2novel, cross_dataset,
domain_generalization configs) or pretraining (configs/pretrain_shapes.py), chosen by
`config.job`.

    python -m adaring_jax.main --config=configs/fewshot.py[:key=value,...] --workdir=DIR \
        [--config.optim.lr=0.002 ...] [--distributed] [--traceback] [--verbosity=0]

A problem the user can fix (a config value, a path, data, a checkpoint, a busy or foreign
workdir, a diverging run) ends with one message on stderr and exit status 2; anything else
with a short report and status 1. `--traceback` (or ADARING_TRACEBACK=1) adds the Python
traceback. absl/Orbax INFO logging is off unless `--verbosity=0`.

Multi-host (Cloud TPU pods, SLURM): launch one process per host with --distributed;
jax.distributed.initialize() finds the coordinator itself there, or takes
--coordinator_address/--num_processes/--process_id.
"""

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before transformers is imported

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from adaring_jax import cli  # noqa: E402
from adaring_jax.job import pretrain, train
from adaring_jax.errors import ConfigError  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, results).",
                               required=True)
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize().")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")

JOBS = {"adapt": train.train_and_evaluate, "pretrain": pretrain.run}


def _job():
    if _DISTRIBUTED.value:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only runs
        kwargs = {"coordinator_address": _COORDINATOR.value,
                  "num_processes": _NUM_PROCESSES.value, "process_id": _PROCESS_ID.value}
        jax.distributed.initialize(**{k: v for k, v in kwargs.items() if v is not None})
    try:  # config_flags raises a config file's errors only now, pasted into its own
        config = _CONFIG.value
        if config is None:
            raise ConfigError("no experiment config: pass --config=configs/<experiment>.py "
                              "(e.g. configs/fewshot.py)")
        job = config.get("job")  # set by every config (config_args.base_config)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(cli.flag_error_message(e)) from e
    if job not in JOBS:
        raise ConfigError(f"config.job={job!r} is not valid; choose from: {', '.join(JOBS)}")
    JOBS[job](config, _WORKDIR.value)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    return cli.run(_job)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
