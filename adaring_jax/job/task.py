"""The task of an adaptation run: its training draw and evaluation sets, built from a config and
checked before the run writes anything.

`build` opens the protocol's splits, draws the K-shot training set (Dassl's draw, or upstream's
cache), splits base and novel classes, and says whether the whole is comparable with the
published tables. `check` then refuses tasks that cannot give meaningful numbers: an empty
split, fewer training images than one batch, or a split whose sampled images are mostly
unreadable (a misplaced image folder).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from absl import logging

from adaring_jax import adapters, data
from adaring_jax.data import own, presets

ALL_SHOTS = -1  # data.shots for every training image (config argument shots=all)
USABLE_PROBE = 32  # images decoded per large split before training to find unreadable folders
PROBE_WHOLE = 1000  # a split of at most this many images is decoded whole before training


@dataclasses.dataclass
class EvalSet:
    source: object
    indices: np.ndarray
    classnames: list[str]
    coop_template: str  # the dataset's CoOp template; config.data.prompt picks the one used


@dataclasses.dataclass
class Task:
    train: object  # the training source (base classes only for base2novel)
    train_indices: np.ndarray  # into `train`
    evals: dict[str, EvalSet]  # by split name ("base"/"novel", "test", or dataset names)
    draw: dict  # what draw.json records: the K-shot indices and where they came from
    comparability: dict  # whether splits and draw are the published ones, and why
    classnames: list[str]  # all classes of the training dataset (base and novel)
    own: own.Table | own.TfdsTable | None = None  # the user's own data, checked


def own_table(config) -> own.Table | own.TfdsTable | None:
    """The checked split of a user's own dataset (`folder:`/`list:`), None for a preset;
    reads the data, writes nothing."""
    if not own.is_own(config.data.dataset):
        return None
    d = config.data
    return own.load(d.dataset, d.split_file, d.data_dir, d.tfds_splits, d.classnames_file,
                    d.template, d.allow_outside)


def prompt_template(config, style: str, coop_template: str) -> str:
    """The prompt template of a run for a prompt `style` (`data.prompt`/`zeroshot_prompt`):
    a preset's per style (data/prompts.py); the user's own data always `data.template`."""
    if own.is_own(config.data.dataset):
        return config.data.template
    return data.prompts.template(style, coop_template)


def adapted_template(config, coop_template: str) -> str:
    """The adapted model's prompt template: the method's own if it fixes one, else that of
    `config.data.prompt`."""
    own_template = adapters.get(config.method).template(config.adapter)
    return own_template or prompt_template(config, config.data.prompt, coop_template)


def _open(config, name, split, image_size, table=None):
    if table is not None and name == config.data.dataset:
        return own.source(table, split, config.data.template)
    kwargs = {}
    if presets.is_shapes(name):
        kwargs = dict(image_size=image_size, size=config.data.shapes_size[split])
        if name == "shapes":
            kwargs["domain"] = config.data.shapes_domain
    return data.open_split(name, split, config.data.data_dir or None,
                           config.data.split_dir or None, **kwargs)


def _comparability(sources: dict, how: dict) -> dict:
    """Whether a run's images, split and draw are those of the published tables, and why."""
    splits = {k: getattr(s, "provenance", "") for k, s in sources.items()}
    known = [getattr(s, "comparable", None) for s in sources.values()]
    out = {"splits": splits, **how}
    if None in known:  # the embedded world: nothing published to compare with
        out["comparable"] = None
    else:
        out["comparable"] = all(known) and how["fewshot_comparable"]
        if not out["comparable"]:
            reasons = [v for k, v in splits.items() if not getattr(sources[k], "comparable")]
            reasons += [] if how["fewshot_comparable"] else [how["fewshot"]]
            logging.warning("this run is NOT comparable with published numbers: %s",
                            "; ".join(reasons))
    return out


def build(config, image_size: int, table=None) -> Task:
    """The protocol's training draw and evaluation sets (reads split files, writes nothing);
    `table`: the user's own data (`own_table`)."""
    name, shots, seed = config.data.dataset, config.data.shots, config.seed
    train = _open(config, name, "train", image_size, table)
    if len(train) == 0:
        raise data.DataError(f"the train split of {name!r} is empty")
    if shots == ALL_SHOTS:
        draw = np.arange(len(train))
        how = {"fewshot": "every training image (shots=all)", "fewshot_comparable": False}
    else:
        draw, how = data.draw_train(train, shots, seed)
    sources = {"train": train}
    evals: dict[str, EvalSet] = {}
    if config.protocol == "base2novel":
        base, novel = data.base_novel_split(len(train.classnames))
        if min(len(base), len(novel)) < 2:
            raise data.DataError(
                f"protocol=base2novel splits {name!r}'s {len(train.classnames)} classes into "
                f"{len(base)} base and {len(novel)} novel; each half needs at least 2 classes "
                "(a 1-class half is always 100% right): give at least 4 classes, or use "
                "protocol=fewshot")
        keep, _ = data.relabel(train.labels()[draw], base)
        names = [train.classnames[c] for c in base]
        train_src = data.Subset(train, draw[keep], names,
                                label_map=data.label_lookup(base, len(train.classnames)))
        train_idx = np.arange(len(keep))
        test = sources["test"] = _open(config, name, "test", image_size, table)
        for split, ids in (("base", base), ("novel", novel)):
            idx, _ = data.relabel(test.labels(), ids)
            sub = data.Subset(test, idx, [test.classnames[c] for c in ids],
                              label_map=data.label_lookup(ids, len(test.classnames)))
            evals[split] = EvalSet(sub, np.arange(len(idx)), sub.classnames, test.template)
    else:
        train_src, train_idx = train, draw
        targets = {"fewshot": [name], "cross_dataset": [name, *config.data.eval_datasets],
                   "domain_generalization": list(config.data.eval_datasets)}[config.protocol]
        for target in targets:
            test = _open(config, target, "test", image_size, table)
            split = "test" if config.protocol == "fewshot" else target
            sources[split] = test
            evals[split] = EvalSet(test, np.arange(len(test)), test.classnames, test.template)
    if config.eval.max_examples:
        for e in evals.values():
            e.indices = e.indices[:config.eval.max_examples]
    comparability = _comparability(sources, how)
    record = dict(dataset=name, shots=shots, seed=seed, train_indices=np.asarray(draw),
                  **comparability)
    return Task(train_src, train_idx, evals, record, comparability, list(train.classnames),
                table)


def _check_distinct_names(classnames, where: str) -> None:
    """Two labels with one class name would get the same prompt: refuse them."""
    folded: dict[str, int] = {}
    for label, name in enumerate(classnames):
        key = data.prompts.prompt_key(name)
        if key in folded:
            raise data.DataError(f"{where}: labels {folded[key]} and {label} have the same class "
                                 f"name {name!r} (case and '_' ignored), so their prompts would "
                                 "be the same; give them distinct names")
        folded[key] = label


def check(task: Task, config, global_batch: int) -> None:
    """Refuse a task that cannot give meaningful numbers, before anything is written."""
    if adapters.get(config.method).trains and len(task.train_indices) < global_batch:
        raise data.DataError(
            f"{len(task.train_indices)} training images (after the {config.data.shots}-shot "
            f"draw) are fewer than one batch of {global_batch}; lower optim.batch_size")
    _check_distinct_names(task.classnames, config.data.dataset)
    for split, e in task.evals.items():
        _check_distinct_names(e.classnames, f"{config.data.dataset} ({split})")
        if len(e.indices) == 0:
            raise data.DataError(f"evaluation split {split!r} of {config.data.dataset!r} has no "
                                 "images; check the split file or folder")
    probes = {"train": (task.train, task.train_indices)}
    probes.update({s: (e.source, e.indices) for s, e in task.evals.items()})
    for split, (source, indices) in probes.items():
        usable_share(source, indices, split, config.data.min_usable)


def usable_share(source, indices, split: str, bound: float) -> float:
    """Decode a split (whole up to PROBE_WHOLE images, else USABLE_PROBE evenly spaced ones);
    raise DataError when the share that decodes is under `bound` (e.g. a misplaced image
    folder: every file missing), naming a few of the unreadable files."""
    if _renders_images(source):
        return 1.0
    count = len(indices) if len(indices) <= PROBE_WHOLE else USABLE_PROBE
    picks = np.unique(np.linspace(0, len(indices) - 1, count).astype(np.int64)) \
        if len(indices) else np.zeros(0, np.int64)
    valid = [source[int(indices[i])].get("valid", True) for i in picks]
    share = float(np.mean(valid)) if valid else 1.0
    if share < bound:
        inner = getattr(source, "source", source)
        where = getattr(inner, "image_dir", None)
        bad = sorted(getattr(inner, "bad", None).paths) if hasattr(inner, "bad") else []
        shown = ", ".join(bad[:3]) + (f", ... ({len(bad)} in all)" if len(bad) > 3 else "")
        whole = "" if count == len(indices) and len(picks) == len(indices) else "sampled "
        raise data.DataError(
            f"{split}: only {sum(valid)} of {len(valid)} {whole}images could be read "
            f"(usable share {share:.0%} < data.min_usable {bound:.0%})"
            + (f"; unreadable: {shown}" if shown else "")
            + (f"; are the images under {where}?" if where else ""))
    return share


def _renders_images(source) -> bool:
    """Sources that render their images (the shapes world) need no probe."""
    inner = getattr(source, "source", source)
    return not hasattr(inner, "bad")


def task_words(task: Task, config) -> list[str]:
    """Words of every class name and prompt of the task (vocabulary for random weights)."""
    texts = [*data.class_prompts(task.train.classnames, "{}"), task.train.template,
             data.prompts.MMA_TEMPLATE, *presets.ENSEMBLE_TEMPLATES,
             adapted_template(config, task.train.template)]
    for e in task.evals.values():
        texts += [*data.class_prompts(e.classnames, "{}"), e.coop_template]
    words = {w for t in texts for w in t.replace("{}", " ").replace(".", " . ")
             .replace(",", " , ").lower().split()}
    return sorted(words)


def skipped_train_images(task: Task) -> int:
    """Training images that could not be decoded during the run."""
    inner = getattr(task.train, "source", task.train)
    return len(getattr(inner, "bad", ()))
