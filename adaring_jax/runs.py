"""A finished run, read back: the one place that loads a workdir for `predict`, `compress`,
`export` and a warm start (`config.adapter.init_from`).

When a run starts (after its inputs are checked), it records beside `experiment.json`:
- `config.json`: the whole experiment config;
- `task.json`: the training dataset's class names, each evaluation split's class names and
  prompt templates, and the words of a random-weight model's vocabulary.
A run is finished once `results.json` exists; its adapters are the last Orbax step's.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import ml_collections
import numpy as np

from adaring_jax import adapters, backbone, checkpoint, data, task as tasks
from adaring_jax.errors import UserError

CONFIG = "config.json"
TASK = "task.json"
RESULTS = "results.json"


class RunError(UserError, ValueError):
    """A workdir that is not a finished run of the kind a command needs."""


def _write_json(path: str, value) -> None:
    tmp = path + ".tmp"  # rename: never half a file
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def record(workdir: str, config, task) -> None:
    """Write config.json and task.json for `task` (a `task.Task`) into `workdir` (process 0)."""
    if jax.process_index() != 0:
        return
    def templates(coop_template: str) -> dict:
        return {"adapted": data.prompts.template(config.data.prompt, coop_template),
                "zeroshot": data.prompts.template(config.data.zeroshot_prompt, coop_template)}

    info = {"dataset": config.data.dataset,
            "classnames": list(task.classnames),
            "templates": templates(task.train.template),
            "splits": {name: {"classnames": list(e.classnames),
                              "templates": templates(e.coop_template)}
                       for name, e in task.evals.items()},
            "words": tasks.task_words(task)}
    _write_json(os.path.join(workdir, CONFIG), json.loads(config.to_json()))
    _write_json(os.path.join(workdir, TASK), info)


@dataclasses.dataclass
class Record:
    """What a finished run wrote: its config, task and results."""
    workdir: str
    config: ml_collections.ConfigDict
    task: dict
    results: dict

    @property
    def method(self) -> str:
        return self.config.method


def read(workdir: str) -> Record:
    """The record of the finished run in `workdir`; RunError says what is missing and why."""
    if not os.path.isdir(workdir):
        raise RunError(f"no run directory at {workdir}")
    paths = {name: os.path.join(workdir, name) for name in (CONFIG, TASK, RESULTS)}
    if not os.path.exists(paths[CONFIG]) or not os.path.exists(paths[TASK]):
        raise RunError(f"{workdir} has no {CONFIG} and {TASK}: it is not a run directory, or "
                       "the run was made before runs recorded them (run it again with "
                       "python -m adaring_jax.main)")
    if not os.path.exists(paths[RESULTS]):
        raise RunError(f"the run in {workdir} is unfinished (no {RESULTS}); finish it by "
                       "running the command that started it again (it resumes)")
    values = {}
    for name, path in paths.items():
        try:
            with open(path) as f:
                values[name] = json.load(f)
        except (OSError, ValueError) as e:
            raise RunError(f"cannot read {path}: {e}") from None
    config = ml_collections.ConfigDict(values[CONFIG])
    return Record(workdir, config, values[TASK], values[RESULTS])


def restore_adapters(rec: Record, spec: adapters.AdapterSpec):
    """The adapter params of the run's last checkpoint step, checked against `spec`."""
    directory = os.path.join(rec.workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise checkpoint.CheckpointError(
            f"no checkpoints in {directory}: the {rec.method} run in {rec.workdir} lost its "
            "adapters; train it again in a new workdir")
    with checkpoint.Checkpointer(directory, None) as ckpt:
        state = ckpt.restore_as_saved()
    params = state.get("adapters") if isinstance(state, dict) else None
    want = adapters.param_shapes(spec)
    shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)  # noqa: E731
    if params is None or (jax.tree.structure(params) != jax.tree.structure(want)
                          or shapes(params) != shapes(want)):
        raise checkpoint.CheckpointError(
            f"the checkpoint in {directory} does not hold {rec.method} adapters of the shape "
            "its config.json describes")
    return jax.tree.map(lambda x: jax.numpy.asarray(x, np.float32), params)


@dataclasses.dataclass
class Loaded:
    """A finished run ready to use: frozen CLIP, tokenizer, adapter spec and params."""
    record: Record
    model: object
    frozen: dict
    tok: object
    spec: adapters.AdapterSpec
    adapters: dict | None  # None for a zero-shot run

    def classes(self, split: str = "") -> tuple[list[str], str]:
        """(class names, prompt template) of the run's dataset, or of one evaluation split."""
        task = self.record.task
        kind = "zeroshot" if self.record.method == "zeroshot" else "adapted"
        if not split:
            return task["classnames"], task["templates"][kind]
        if split not in task["splits"]:
            raise RunError(f"the run has no evaluation split {split!r}; its splits: "
                           f"{', '.join(task['splits'])}")
        entry = task["splits"][split]
        return entry["classnames"], entry["templates"][kind]


def load(workdir: str, methods=adapters.METHODS) -> Loaded:
    """Backbone (from the run's recorded checkpoint), tokenizer and adapters of a finished run
    of one of `methods`."""
    rec = read(workdir)
    if rec.method not in methods:
        raise RunError(f"{workdir} is a {rec.method} run; this command needs a run of method "
                       f"{' or '.join(methods)}")
    model, frozen, tok = backbone.load(rec.config, rec.task["words"])
    spec = adapters.spec_from_config(rec.config, model.config)
    params = None if rec.method == "zeroshot" else restore_adapters(rec, spec)
    return Loaded(rec, model, frozen, tok, spec, params)


def initial_adapters(config, spec: adapters.AdapterSpec, model_config):
    """A run's first adapter params: fresh (`adapters.init`) or, with
    `config.adapter.init_from`, a finished run's: the same spec is copied (continue training);
    a `mma` run is compressed by TR-SVD into a one-bank `adaring` spec of rank R (each family
    capped at R and zero-padded to it, `adapters.from_dense`)."""
    source = config.adapter.get("init_from", "")
    if not source:
        return adapters.init(spec, config.seed)
    rec = read(source)
    if rec.method == "zeroshot":
        raise RunError(f"adapter.init_from={source!r} is a zero-shot run: it has no adapters")
    backbone_of = lambda c: (c.model.arch, c.model.checkpoint)  # noqa: E731
    if backbone_of(rec.config) != backbone_of(config):
        raise RunError(f"adapter.init_from={source!r} adapted backbone "
                       f"{backbone_of(rec.config)}, this run uses {backbone_of(config)}")
    source_spec = adapters.spec_from_config(rec.config, model_config)
    params = restore_adapters(rec, source_spec)
    if source_spec == spec:
        return params
    same_bank = (source_spec.layers, source_spec.hidden) == (spec.layers, spec.hidden)
    if (rec.method == "mma" and spec.method == "adaring" and len(spec.ranks) == 1 and same_bank
            and spec.bias == "dense"):
        return adapters.from_dense(params, spec, rel_eps=None, max_rank=spec.ranks[0])[0]
    raise RunError(
        f"adapter.init_from={source!r} ({rec.method}, layers {source_spec.layers}, hidden "
        f"{source_spec.hidden}) cannot initialize this {spec.method} run: give a run of the "
        "same method and adapter config, or an mma run with the same layers and hidden width "
        "for a one-bank adaring run (ranks=R, bias=dense)")
