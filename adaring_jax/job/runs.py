"""A finished run, read back: the one place that loads a workdir for `predict`, `compress`,
`export` and a warm start (`config.adapter.init_from`).

When a run starts (after its inputs are checked), it records beside `experiment.json` (its
identity, `identity.py`):
- `config.json`: the whole experiment config, which must agree with the identity when read;
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

from adaring_jax import adapters
from adaring_jax.errors import UserError
from adaring_jax import atomic
from adaring_jax.job import backbone, checkpoint, identity, outputs, task as tasks
from adaring_jax.job import workdir as workdir_module

CONFIG = "config.json"
TASK = "task.json"
DRAW = "draw.json"
RESULTS = workdir_module.RESULTS


class RunError(UserError, ValueError):
    """A workdir that is not a finished run of the kind a command needs."""


def record(workdir: str, config, task) -> None:
    """Write config.json, task.json and draw.json (the drawn indices) for `task` (a
    `task.Task`) into `workdir` (process 0)."""
    if jax.process_index() != 0:
        return
    draw = {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v)
            for k, v in task.draw.items()}
    atomic.write_text(os.path.join(workdir, DRAW), json.dumps(draw))
    split = task.own.coop() if task.own is not None else None
    if split is not None:  # the user's folder or list: its split, to share or pass back
        atomic.write_json(os.path.join(workdir, task.own.split_file_name()), split)
        # and what its images were, to say what changed if the data is not the same later
        atomic.write_json(os.path.join(workdir, outputs.IMAGES_RECORD), task.own.record())

    def templates(coop_template: str) -> dict:
        return {"adapted": tasks.adapted_template(config, coop_template),
                "zeroshot": tasks.prompt_template(config, config.data.zeroshot_prompt,
                                                  coop_template)}

    info = {"dataset": config.data.dataset,
            "classnames": list(task.classnames),
            "templates": templates(task.train.template),
            "splits": {name: {"classnames": list(e.classnames),
                              "templates": templates(e.coop_template)}
                       for name, e in task.evals.items()},
            "words": tasks.task_words(task, config)}
    atomic.write_json(os.path.join(workdir, CONFIG), json.loads(config.to_json()))
    atomic.write_json(os.path.join(workdir, TASK), info)


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

    @property
    def trained(self) -> bool:
        """Whether the run trained adapters (not a zero-shot run)."""
        return adapters.get(self.method).trains


def read(workdir: str) -> Record:
    """The record of the finished run in `workdir`; RunError says what is missing and why."""
    if not os.path.isdir(workdir):
        raise RunError(f"no run directory at {workdir}")
    paths = {name: os.path.join(workdir, name)
             for name in (CONFIG, TASK, RESULTS, workdir_module.FINGERPRINT)}
    if not all(os.path.exists(paths[n]) for n in (CONFIG, TASK, workdir_module.FINGERPRINT)):
        raise RunError(f"{workdir} lacks {CONFIG}, {TASK} or {workdir_module.FINGERPRINT}: it is "
                       "not a run directory, or "
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
    recorded = values[workdir_module.FINGERPRINT]
    if isinstance(recorded, dict):  # what the config names but does not hold (the split)
        recorded = {k: v for k, v in recorded.items() if k not in identity.DATA_FIELDS}
    diffs = identity.differences(recorded, identity.of(values[CONFIG])) \
        if isinstance(values[CONFIG], dict) and isinstance(
            values[workdir_module.FINGERPRINT], dict) else ["config.json is not a config"]
    if diffs:
        raise RunError(f"{paths[CONFIG]} does not describe the run recorded in "
                       f"{paths[workdir_module.FINGERPRINT]} (was it edited?); differing "
                       "fields:\n  " + "\n  ".join(diffs))
    if values[CONFIG].get("method") not in adapters.METHODS:
        raise RunError(f"{paths[CONFIG]} names method {values[CONFIG].get('method')!r}, "
                       f"which this version does not have ({', '.join(adapters.METHODS)})")
    _check_task(values[TASK], paths[TASK])
    try:
        config = ml_collections.ConfigDict(values[CONFIG])
    except (TypeError, ValueError, AttributeError) as e:
        raise RunError(f"{paths[CONFIG]} is not a config ({e})") from None
    return Record(workdir, config, values[TASK], values[RESULTS])


def _check_task(task, path: str) -> None:
    """task.json as the run wrote it, or RunError naming what is wrong (it may be edited)."""
    def strings(x):
        return isinstance(x, list) and x and all(isinstance(n, str) and n for n in x)

    def templates(x):
        return isinstance(x, dict) and all(isinstance(x.get(k), str) and "{}" in x[k]
                                           for k in ("adapted", "zeroshot"))
    problem = None
    if not isinstance(task, dict):
        problem = "it is not an object"
    elif not strings(task.get("classnames")):
        problem = "'classnames' must be a non-empty list of class names"
    elif not templates(task.get("templates")):
        problem = "'templates' must give an 'adapted' and a 'zeroshot' template with {}"
    elif not isinstance(task.get("splits"), dict) or not all(
            isinstance(e, dict) and strings(e.get("classnames")) and templates(e.get("templates"))
            for e in task["splits"].values()):
        problem = "'splits' must map each split to its class names and templates"
    elif not isinstance(task.get("words"), list):
        problem = "'words' must be a list"
    if problem:
        raise RunError(f"{path} is not as the run wrote it: {problem}; restore it (it is "
                       "written when the run starts) or train again")


def restore_adapters(rec: Record, spec: adapters.Spec):
    """The adapter params of the run's last checkpoint step, checked against `spec`."""
    directory = os.path.join(rec.workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise checkpoint.CheckpointError(
            f"no checkpoints in {directory}: the {rec.method} run in {rec.workdir} lost its "
            "adapters; train it again in a new workdir")
    with checkpoint.Checkpointer(directory) as ckpt:
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
    spec: adapters.Spec
    adapters: dict  # {} for a zero-shot run (spec adapters.NONE)

    def classes(self, split: str = "") -> tuple[list[str], str]:
        """(class names, prompt template) of the run's dataset, or of one evaluation split."""
        task = self.record.task
        kind = "adapted" if self.record.trained else "zeroshot"
        if not split:
            return task["classnames"], task["templates"][kind]
        if split not in task["splits"]:
            raise RunError(f"the run has no evaluation split {split!r}; its splits: "
                           f"{', '.join(task['splits'])}")
        entry = task["splits"][split]
        return entry["classnames"], entry["templates"][kind]


def load(workdir: str, needs_adapters: bool = False) -> Loaded:
    """Backbone (from the run's recorded checkpoint), tokenizer and adapters of a finished run;
    with `needs_adapters`, a zero-shot run is refused."""
    rec = read(workdir)
    if needs_adapters and not rec.trained:
        raise RunError(f"{workdir} is a {rec.method} run: it has no adapters; this command "
                       "needs a run that trained some")
    model, frozen, tok = backbone.load(rec.config, rec.task["words"])
    spec = adapters.spec_from_config(rec.config, model.config)
    params = restore_adapters(rec, spec) if rec.trained else {}
    return Loaded(rec, model, frozen, tok, spec, params)


def initial_adapters(config, spec: adapters.Spec, model_config):
    """A run's first adapter params: fresh (`adapters.init`) or, with
    `config.adapter.init_from`, a finished run's, converted by the method when it can
    (`Method.warm_start`: the same spec is copied; adaring compresses an mma run by TR-SVD)."""
    source = config.adapter.get("init_from", "")
    if not source:
        return adapters.init(spec, config.seed)
    rec = read(source)
    if not rec.trained:
        raise RunError(f"adapter.init_from={source!r} is a zero-shot run: it has no adapters "
                       f"(method {rec.method})")
    backbone_of = lambda c: (c.model.arch, c.model.checkpoint)  # noqa: E731
    if backbone_of(rec.config) != backbone_of(config):
        raise RunError(f"adapter.init_from={source!r} adapted backbone "
                       f"{backbone_of(rec.config)}, this run uses {backbone_of(config)}")
    source_spec = adapters.spec_from_config(rec.config, model_config)
    params = restore_adapters(rec, source_spec)
    started = adapters.get(spec.method).warm_start(rec.method, params, source_spec, spec)
    if started is None:
        raise RunError(
            f"adapter.init_from={source!r} (a {rec.method} run, spec {source_spec}) cannot "
            f"initialize this {spec.method} run (spec {spec}): give a run of the same method "
            "and adapter config, or one its method converts (adaring: an mma run with the same "
            "layers and hidden width, for a one-bank ring, ranks=R, bias=dense)")
    return started
