"""The adaptation job: task -> frozen CLIP + adapters -> the shared training loop -> evaluation
-> results.json / results.md.

Order of work, so that a bad input never damages a workdir: validate the config, build and
check the task (splits, draw, counts, a sample of images), load and check the backbone, check
the workdir; only then lock it, record the experiment, train (`loop.run`) and evaluate.
One code path for a laptop CPU, a GPU box and a TPU pod: a 1-D `data` mesh over all devices,
global batches assembled from per-process shards, gradients taken with respect to the adapter
pytree only, state donated. Every batch is a pure function of (seed, step), so the checkpoint
(adapters, optimizer state, step) is all a resumed run needs to continue exactly.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp

from adaring_jax import adapters, data
from adaring_jax.data import presets
from adaring_jax.errors import ConfigError, Stopped
from adaring_jax.job import (backbone, buckets, checkpoint, evaluate, loop, metrics, objective,
                             optim, report, runs, sharding, skeleton, task as tasks, validation,
                             zeroshot_cache)
from adaring_jax.models import clip, convert


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Everything a run needs, read and checked before the workdir is touched."""
    task: tasks.Task               # splits, few-shot draw, class names, templates
    model: clip.CLIP               # the CLIP's architecture
    frozen: dict                   # its frozen weights (host memory; sharded in `_run`)
    tok: object                    # its tokenizer
    spec: adapters.Spec            # the method's adapter spec for this CLIP
    mesh: jax.sharding.Mesh        # the 1-D `data` mesh over all devices
    initial: dict                  # the first adapter params (fresh or warm-started)
    prepare_seconds: float         # the wall time of all of the above


def train_and_evaluate(config, workdir: str) -> dict:
    """Run the experiment `config` in `workdir`; returns the results (also written there)."""
    validation.validate(config)
    if config.job != "adapt":
        raise ConfigError(f"config.job={config.job!r}: not an adaptation config "
                          "(python -m adaring_jax.main runs every job)")
    table = tasks.own_table(config)  # the user's own data, listed and split (writes nothing)
    return skeleton.run(config, workdir, lambda: _prepare(config, table),
                        lambda prepared: _run(config, workdir, prepared),
                        table)


def _prepare(config, table) -> Prepared:
    """Task, backbone, spec, first adapters and mesh, each read and checked; writes nothing."""
    start = time.monotonic()
    arch = convert.architecture(config.model.arch, config.model.checkpoint)  # reads config.json
    validation.check_depth(config, arch)
    task = tasks.build(config, arch.vision.image_size, table)
    tasks.check(task, config, config.optim.batch_size)
    model, frozen, tok = backbone.load(config, tasks.task_words(task, config))
    spec = adapters.spec_from_config(config, model.config)
    # A warm start's source is read and checked now, before anything is written.
    initial = runs.initial_adapters(config, spec, model.config)
    if not config.adapter.get("init_from", ""):  # a fresh init that needs the backbone
        initial = adapters.get(config.method).backbone_init(initial, spec, model, frozen, tok,
                                                            config.adapter)
    return Prepared(task, model, frozen, tok, spec, sharding.make_mesh(), initial,
                    round(time.monotonic() - start, 2))


def _run(config, workdir, p: Prepared) -> dict:
    task, model, tok, spec, mesh = p.task, p.model, p.tok, p.spec, p.mesh
    runs.record(workdir, config, task)  # what predict, export and compress read back
    frozen = jax.device_put(p.frozen, sharding.backbone_shardings(p.frozen, mesh,
                                                                  config.model.fsdp))
    results = {"protocol": config.protocol, "method": config.method,
               "dataset": config.data.dataset, "shots": config.data.shots, "seed": config.seed,
               "trainable_params": adapters.count(spec), "prompt": config.data.prompt,
               "zeroshot_prompt": config.data.zeroshot_prompt,
               "comparability": task.comparability, "prepare_seconds": p.prepare_seconds}
    adapter_params = p.initial
    if adapters.get(config.method).trains:
        outcome = _train(config, workdir, model, frozen, tok, spec, mesh, task, p.initial)
        results.update(outcome.info)
        if outcome.state is None:  # preempted: a checkpoint is written, nothing to evaluate
            raise Stopped(f"stopped by SIGTERM at step {outcome.info['preempted_at']}: its "
                          "checkpoint is saved, nothing was evaluated; run the same command to "
                          "resume")
        adapter_params = outcome.state["adapters"]
    checkpoint.sigterm_raises("stopped by SIGTERM during evaluation: the trained adapters are "
                              "checkpointed and no results were written; run the same command "
                              "to evaluate them")
    start = time.monotonic()
    accuracy, unread = _evaluate(config, model, frozen, tok, spec, mesh, task.evals,
                                 adapter_params)
    results["eval_seconds"] = round(time.monotonic() - start, 2)
    results.update(accuracy)
    # Per split: training images that failed to decode, evaluation images left uncounted.
    results["skipped_images"] = {"train": tasks.skipped_train_images(task), **unread}
    if jax.process_index() == 0:
        report.write(workdir, results)
    return results


def _train(config, workdir, model, frozen, tok, spec, mesh, task, initial) -> loop.Outcome:
    repl = sharding.replicated(mesh)
    train_src = task.train
    ids = evaluate.prompt_ids(tok, train_src.classnames,
                              tasks.adapted_template(config, train_src.template))
    bucket = _bucket_training(config, spec, initial)  # one program for every class count
    start = objective.text_start(model, spec)
    templates = (train_src.template, *presets.ENSEMBLE_TEMPLATES)
    text_ref = evaluate.class_embeddings(model, frozen, tok, train_src.classnames, templates,
                                         fixed_batch=bucket)
    if bucket:
        padded, valid = buckets.bucket_ids(ids, mesh.devices.size,
                                           model.config.text.context_length)
        prompts = objective.Prompts.cached(
            model, frozen, jax.device_put(padded, sharding.batch_sharded(mesh)), start,
            valid=jax.device_put(valid.astype("float32"), repl))
        text_ref = jax.device_put(buckets.pad_rows(text_ref, len(padded)), repl)
    else:
        padded = jax.device_put(sharding.pad_rows(ids, mesh.devices.size),
                                sharding.batch_sharded(mesh))
        prompts = objective.Prompts.cached(model, frozen, padded, start, len(ids))

    loader = data.TrainLoader(train_src, task.train_indices, config.optim.batch_size,
                              model.config.vision.image_size, config.seed,
                              jax.process_index(), jax.process_count(),
                              (config.data.crop_scale, 1.0), config.data.num_threads)
    total = config.optim.steps or config.optim.epochs * loader.steps_per_epoch
    opt, schedule = optim.make_optimizer(config, spec, total, loader.steps_per_epoch)
    a = initial
    state = jax.device_put({"adapters": a, "opt_state": opt.init(a),
                            "step": jnp.zeros((), jnp.int32)}, repl)
    jitted = optim.make_train_step(backbone.step_model(model, config), spec,
                                   config.loss.to_dict(), opt, schedule, mesh, config.seed,
                                   optim.optimizer_of(config, spec) if bucket else None)
    if bucket:  # the run's length and seed as arguments, not constants of the program
        given = optim.step_arguments(schedule, config.seed, mesh)
        step_fn = lambda state, batch: jitted(state, frozen, batch, prompts,  # noqa: E731
                                              text_ref, given(state["step"]))
    else:
        step_fn = lambda state, batch: jitted(state, frozen, batch, prompts,  # noqa: E731
                                              text_ref)
    batches = lambda start, stop: (sharding.global_batch(b, mesh)  # noqa: E731
                                   for b in loader.batches(start, stop))
    writer = metrics.MetricWriter(workdir)
    with checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 max_to_keep=config.max_to_keep) as ckpt:
        try:
            return loop.run(step_fn, state, batches, total, ckpt, writer,
                            log_every=config.log_every, checkpoint_every=config.checkpoint_every,
                            images_per_step=config.optim.batch_size)
        finally:
            writer.close()


def _bucket_training(config, spec, params) -> bool:
    """Class buckets for the train step (`data.class_bucket`), unless the text tower draws
    dropout masks (CLIP-LoRA): their draws follow the prompt batch's shape, so a bucket would
    change them (evaluation draws none: it is bucketed all the same)."""
    text = adapters.layer_adapters(params, spec)["text"]
    dropout = text is not None and bool(text.updates) and text.dropout > 0
    return bool(config.data.get("class_bucket", False)) and not dropout


def _evaluate(config, model, frozen, tok, spec, mesh, evals, adapter_params):
    """(accuracy per split of the zero-shot CLIP and of the adapted one -- the zeroshot method:
    the same model, evaluated once --, images per split that could not be read). A zero-shot
    accuracy comes from the cache when it can; otherwise both are measured in one pass over
    the split's images (`evaluate.make_joint_accuracy`)."""
    # kind: (spec, params, prompt template of a dataset's CoOp template, cached across runs)
    rows = {"zeroshot": (adapters.NONE, {}, lambda coop: tasks.prompt_template(
                config, config.data.zeroshot_prompt, coop), True),
            "adapted": (spec, adapter_params, lambda coop: tasks.adapted_template(config, coop),
                        False)}
    if spec == adapters.NONE:
        del rows["adapted"]
    out = {kind: {} for kind in ("zeroshot", "adapted")}
    unread = {}
    # Hashing the weights (600 MB on ViT-B/16) only when some split can be cached (not TFDS).
    weights = (zeroshot_cache.weights_digest(frozen)
               if zeroshot_cache.any_cacheable(e.source for e in evals.values()) else "")
    size, batch, threads = (model.config.vision.image_size, config.eval.batch_size,
                            config.data.num_threads)
    bucket = config.data.get("class_bucket", False)  # one set of programs for every split
    class_features = {k: evaluate.make_class_features(model, r[0], mesh, bucket)
                      for k, r in rows.items()}
    accuracy = {k: evaluate.make_accuracy(model, r[0], mesh, size, batch, threads)
                for k, r in rows.items()}
    joint = evaluate.make_joint_accuracy(model, spec, mesh, size, batch, threads)
    for split, e in evals.items():
        ids, entries, got = {}, {}, {}
        for kind, (_, _, template_of, cached) in rows.items():
            ids[kind] = evaluate.prompt_ids(tok, e.classnames, template_of(e.coop_template))
            keyed = ids[kind] if not bucket else buckets.bucket_ids(  # bucketed: its own entry
                ids[kind], mesh.devices.size, model.config.text.context_length)[0]
            entries[kind] = zeroshot_cache.key(weights, keyed, e.source, e.indices, size,
                                               batch, mesh.devices.size) if cached else None
            hit = zeroshot_cache.load(entries[kind])
            if hit is not None:
                got[kind] = hit
        feats = {kind: class_features[kind](frozen, rows[kind][1], ids[kind])
                 for kind in rows if kind not in got}
        if len(rows) == 2 and not got:  # both rows, zero-shot (the cacheable one) not cached:
            # one pass over the images for both
            got["adapted"], got["zeroshot"] = joint(frozen, adapter_params, feats["adapted"],
                                                    feats["zeroshot"], e.source, e.indices)
            zeroshot_cache.store(entries["zeroshot"], *got["zeroshot"])
        for kind, (_, params, _, _) in rows.items():
            if kind not in got:
                got[kind] = accuracy[kind](frozen, params, feats[kind], e.source, e.indices)
                zeroshot_cache.store(entries[kind], *got[kind])
        for kind, (acc, counted) in got.items():
            if counted == 0 or counted < config.data.min_usable * len(e.indices):
                raise data.DataError(
                    f"evaluation split {split!r}: only {counted} of {len(e.indices)} images "
                    f"could be read (under data.min_usable={config.data.min_usable}, or none); "
                    "no results are written")
            out[kind][split] = round(acc, 2)
            unread[split] = len(e.indices) - counted
    for kind in out:
        if {"base", "novel"} <= set(out[kind]):
            out[kind]["hm"] = round(evaluate.harmonic_mean(out[kind]["base"],
                                                           out[kind]["novel"]), 2)
    if "adapted" not in rows:
        out["adapted"] = dict(out["zeroshot"])  # no adapter: the adapted model is CLIP
    return out, unread
