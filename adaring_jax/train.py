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

import json
import math
import os

import jax
import jax.numpy as jnp
import optax

from adaring_jax import (adapters, backbone, checkpoint, data, evaluate, loop, metrics,
                         objective, runs, sharding, task as tasks, validation,
                         workdir as workdirs, zeroshot)
from adaring_jax.data import presets
from adaring_jax.errors import ConfigError
from adaring_jax.models import convert

def fingerprint(config) -> dict:
    """What makes two runs the same experiment (a workdir holds exactly one)."""
    return workdirs.drop_neutral({
        "protocol": config.protocol, "method": config.method,
        "dataset": config.data.dataset, "shots": config.data.shots, "seed": config.seed,
        "prompt": config.data.prompt, "zeroshot_prompt": config.data.zeroshot_prompt,
        "arch": config.model.arch, "checkpoint": config.model.checkpoint,
        "adapter": config.adapter.to_dict(), "optim": config.optim.to_dict(),
        "loss": config.loss.to_dict()})


# ---------------------------------------------------------------------------------------------
# Optimization


def make_schedule(o, total_steps: int, steps_per_epoch: int):
    """The learning rate per step. "epoch_cosine" is Dassl's: CosineAnnealingLR(T_max=epochs)
    stepped once per epoch (`dassl/optim/lr_scheduler.py` L128-131; MMA steps it after an
    epoch's last batch), so epoch e trains at lr * (1 + cos(pi * e / epochs)) / 2."""
    total = max(total_steps, 1)
    warmup = min(o.warmup_steps, max(total_steps - 1, 0))
    if o.schedule == "epoch_cosine":
        per_epoch = max(steps_per_epoch, 1)
        epochs = max(math.ceil(total / per_epoch), 1)

        def cosine(step):
            epoch = jnp.minimum(step // per_epoch, epochs - 1)
            return o.lr * 0.5 * (1.0 + jnp.cos(jnp.pi * epoch / epochs))
    else:
        cosine = optax.cosine_decay_schedule(o.lr, total)
    if not warmup:
        return cosine
    ramp = optax.linear_schedule(0.0, o.lr, warmup)
    return optax.join_schedules([ramp, lambda s: cosine(s + warmup)], [warmup]) \
        if o.schedule == "epoch_cosine" else \
        optax.warmup_cosine_decay_schedule(0.0, o.lr, warmup, total)


def scale_ring_cores(layer_core: float, shared_cores: float) -> optax.GradientTransformation:
    """Multiply the updates of each ring's first (layer-slice) core by `layer_core` and of its
    other (layer-shared) cores by `shared_cores`; other leaves are unchanged. Stateless."""
    def factor(path) -> float:
        keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
        if "cores" not in keys:
            return 1.0
        return layer_core if keys[keys.index("cores") + 1] == 0 else shared_cores

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map_with_path(lambda p, u: u * factor(p), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(config, total_steps: int, steps_per_epoch: int = 0):
    o = config.optim
    schedule = make_schedule(o, total_steps, steps_per_epoch)
    if o.name == "sgd":
        opt = optax.chain(optax.add_decayed_weights(o.weight_decay),
                          optax.sgd(schedule, momentum=o.momentum))
    else:
        opt = optax.adamw(schedule, weight_decay=o.weight_decay)
    multipliers = (o.get("lr_layer_core", 1.0), o.get("lr_shared_cores", 1.0))
    if multipliers != (1.0, 1.0):  # only then: the optimizer state keeps its usual structure
        opt = optax.chain(opt, scale_ring_cores(*multipliers))
    return opt, schedule


def make_train_step(model, spec, weights, opt, schedule, mesh):
    """jitted (state, frozen, batch, prompts, text_ref) -> (state, metrics), differentiating
    the adapter pytree of `state` only (the frozen arrays are arguments, not constants)."""
    repl = sharding.replicated(mesh)

    def step(state, frozen, batch, prompts, text_ref):
        (loss, m), grads = jax.value_and_grad(objective.loss_fn, has_aux=True)(
            state["adapters"], frozen, model, spec, weights, batch["image"], batch["label"],
            prompts, text_ref, batch["mask"])
        updates, opt_state = opt.update(grads, state["opt_state"], state["adapters"])
        new = {"adapters": optax.apply_updates(state["adapters"], updates),
               "opt_state": opt_state, "step": state["step"] + 1}
        m["lr"] = schedule(state["step"])
        m["grad_norm"] = optax.global_norm(grads)
        return new, m

    return jax.jit(step, out_shardings=(repl, repl), donate_argnums=0)


# ---------------------------------------------------------------------------------------------


def train_and_evaluate(config, workdir: str) -> dict:
    """Run the experiment `config` in `workdir`; returns the results (also written there)."""
    validation.validate(config)
    if config.get("job", "adapt") != "adapt":
        raise ConfigError(f"config.job={config.job!r}: not an adaptation config "
                                     "(python -m adaring_jax.main runs every job)")
    arch = convert.architecture(config.model.arch, config.model.checkpoint)  # reads config.json
    validation.check_depth(config, arch)
    fp = fingerprint(config)
    workdirs.check(workdir, fp)
    task = tasks.build(config, arch.vision.image_size)
    tasks.check(task, config, config.optim.batch_size)
    model, frozen, tok = backbone.load(config, tasks.task_words(task))
    spec = adapters.spec_from_config(config, model.config)
    # A warm start's source is read and checked now, before anything is written.
    initial = None if config.method == "zeroshot" else runs.initial_adapters(config, spec,
                                                                              model.config)
    mesh = sharding.make_mesh()
    # Every input is known good: from here on the workdir is written.
    lock = workdirs.acquire(workdir, fp)
    try:
        return _run(config, workdir, task, model, frozen, tok, spec, mesh, initial)
    finally:
        lock.release()


def _run(config, workdir, task, model, frozen, tok, spec, mesh, initial) -> dict:
    if jax.process_index() == 0:
        data.record_draw(os.path.join(workdir, "draw.json"), **task.draw)
    runs.record(workdir, config, task)  # what predict, export and compress read back
    frozen = jax.device_put(frozen, sharding.backbone_shardings(frozen, mesh, config.model.fsdp))
    results = {"protocol": config.protocol, "method": config.method,
               "dataset": config.data.dataset, "shots": config.data.shots, "seed": config.seed,
               "trainable_params": adapters.count(spec), "prompt": config.data.prompt,
               "zeroshot_prompt": config.data.zeroshot_prompt,
               "comparability": task.comparability}
    adapter_params = None
    if config.method != "zeroshot":
        outcome = _train(config, workdir, model, frozen, tok, spec, mesh, task, initial)
        results.update(outcome.info)
        if outcome.state is None:  # preempted: a checkpoint is written, nothing to evaluate
            return results
        adapter_params = outcome.state["adapters"]
    results.update(_evaluate(config, model, frozen, tok, spec, mesh, task.evals,
                             adapter_params))
    results["skipped_images"] = tasks.skipped_images(task)
    if jax.process_index() == 0:
        _write_results(workdir, results)
    return results


def _train(config, workdir, model, frozen, tok, spec, mesh, task, initial) -> loop.Outcome:
    repl = sharding.replicated(mesh)
    train_src = task.train
    ids = evaluate.prompt_ids(tok, train_src.classnames,
                              data.prompts.template(config.data.prompt, train_src.template))
    padded = jax.device_put(sharding.pad_rows(ids, mesh.devices.size),
                            sharding.batch_sharded(mesh))
    prompts = objective.Prompts.cached(model, frozen, padded, spec.layers[0], len(ids))
    templates = (train_src.template, *presets.ENSEMBLE_TEMPLATES)
    text_ref = zeroshot.class_embeddings(model, frozen, tok, train_src.classnames, templates)

    loader = data.TrainLoader(train_src, task.train_indices, config.optim.batch_size,
                              model.config.vision.image_size, config.seed,
                              jax.process_index(), jax.process_count(),
                              (config.data.crop_scale, 1.0), config.data.num_threads)
    total = config.optim.steps or config.optim.epochs * loader.steps_per_epoch
    opt, schedule = make_optimizer(config, total, loader.steps_per_epoch)
    a = initial
    state = jax.device_put({"adapters": a, "opt_state": opt.init(a),
                            "step": jnp.zeros((), jnp.int32)}, repl)
    jitted = make_train_step(model, spec, config.loss.to_dict(), opt, schedule, mesh)
    step_fn = lambda state, batch: jitted(state, frozen, batch, prompts, text_ref)  # noqa: E731
    batches = lambda start, stop: (sharding.global_batch(b, mesh)  # noqa: E731
                                   for b in loader.batches(start, stop))
    writer = metrics.MetricWriter(workdir)
    with checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), None,
                                 max_to_keep=config.max_to_keep) as ckpt:
        try:
            return loop.run(step_fn, state, batches, total, ckpt, writer,
                            log_every=config.log_every, checkpoint_every=config.checkpoint_every,
                            images_per_step=config.optim.batch_size)
        finally:
            writer.close()


def _evaluate(config, model, frozen, tok, spec, mesh, evals, adapter_params) -> dict:
    class_features = evaluate.make_class_features(model, spec, mesh)
    accuracy = evaluate.make_accuracy(model, spec, mesh, model.config.vision.image_size,
                                      config.eval.batch_size, config.data.num_threads)
    out = {"zeroshot": {}, "adapted": {}}
    style = {"zeroshot": config.data.zeroshot_prompt, "adapted": config.data.prompt}
    for split, e in evals.items():
        for kind, params in (("zeroshot", None), ("adapted", adapter_params)):
            if kind == "adapted" and params is None:
                continue
            template = data.prompts.template(style[kind], e.coop_template)
            feats = class_features(frozen, params, evaluate.prompt_ids(tok, e.classnames,
                                                                       template))
            acc, counted = accuracy(frozen, params, feats, e.source, e.indices)
            if counted < config.data.min_usable * len(e.indices):
                raise data.DataError(
                    f"evaluation split {split!r}: only {counted} of {len(e.indices)} images "
                    f"could be read (under data.min_usable={config.data.min_usable}); no "
                    "results are written")
            out[kind][split] = round(acc, 2)
    for kind in out:
        if {"base", "novel"} <= set(out[kind]):
            out[kind]["hm"] = round(evaluate.harmonic_mean(out[kind]["base"],
                                                           out[kind]["novel"]), 2)
    if not out["adapted"]:
        out["adapted"] = dict(out["zeroshot"])  # zeroshot method: the adapted model is CLIP
    return out


def _write_results(workdir: str, results: dict):
    def write(name, text):  # rename: never half a file
        tmp = os.path.join(workdir, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(workdir, name))

    splits = list(results["zeroshot"])
    lines = [f"| model | {' | '.join(splits)} | trainable params |",
             "|---" * (len(splits) + 2) + "|"]
    for kind in ("zeroshot", "adapted"):
        n = 0 if kind == "zeroshot" else results["trainable_params"]
        lines.append(f"| {kind} | " + " | ".join(f"{results[kind][s]:.2f}" for s in splits)
                     + f" | {n:,} |")
    write("results.md", f"{results['method']} on {results['dataset']} ({results['protocol']}, "
          f"{results['shots']} shots, seed {results['seed']})\n\n" + "\n".join(lines) + "\n")
    write("results.json", json.dumps(results, indent=2))
    print("\n".join(lines), flush=True)
