"""The training job: protocol -> data -> frozen CLIP + adapters -> sharded jit steps -> Orbax
checkpoints -> evaluation -> results.json / results.md.

One code path for a laptop CPU, a GPU box and a TPU pod: a 1-D `data` mesh over all devices,
global batches assembled from per-process shards, gradients taken with respect to the adapter
pytree only, state donated. Every batch is a pure function of (seed, step), so the checkpoint
(adapters, optimizer state, step, RNG) is all a resumed run needs to continue exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from adaring_jax import adapters, checkpoint, config_args, data, evaluate, metrics, objective
from adaring_jax import sharding, zeroshot
from adaring_jax.data import presets
from adaring_jax.models import clip, convert, tokenizer

PROTOCOLS = ("fewshot", "base2novel", "cross_dataset", "domain_generalization", "pretrain")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("epoch_cosine", "cosine")
DTYPES = ("auto", "float32", "bfloat16")


def validate(config) -> None:
    """Reject bad values before any compute, naming the field and the valid choices."""
    def check(field, value, valid):
        if value not in valid:
            raise ValueError(f"config.{field}={value!r} is not valid; choose from: "
                             f"{', '.join(map(str, valid))}")
    check("protocol", config.protocol, PROTOCOLS)
    check("method", config.method, adapters.METHODS)
    check("data.dataset", config.data.dataset, tuple(data.DATASETS))
    for name in config.data.eval_datasets:
        check("data.eval_datasets", name, tuple(data.DATASETS))
    check("optim.name", config.optim.name, OPTIMIZERS)
    check("optim.schedule", config.optim.schedule, SCHEDULES)
    check("model.dtype", config.model.dtype, DTYPES)
    check("data.prompt", config.data.prompt, data.prompts.STYLES)
    check("data.zeroshot_prompt", config.data.zeroshot_prompt, data.prompts.STYLES)
    if config.model.arch:
        check("model.arch", clip.ALIASES.get(config.model.arch, config.model.arch),
              tuple(clip.PRESETS))
    elif not config.model.checkpoint:
        raise ValueError("set config.model.checkpoint (a Hugging Face CLIP directory or hub id) "
                         "or config.model.arch (random weights, for tests and benchmarks)")
    embedded = config.model.checkpoint == config_args.EMBEDDED
    if config.recipe != ("embedded" if embedded else "mma"):
        raise ValueError(
            f"config.model.checkpoint={config.model.checkpoint!r} was set after the config was "
            f"built for the {config.recipe} recipe; pass the checkpoint as a config argument "
            "instead (--config=configs/X.py:checkpoint=...), so that the adapter layers and "
            "the optimizer follow that model")
    if config.data.shots < 1:
        raise ValueError(f"config.data.shots={config.data.shots} must be >= 1")
    if config.optim.batch_size % jax.process_count():
        raise ValueError(f"config.optim.batch_size={config.optim.batch_size} must be divisible "
                         f"by the {jax.process_count()} processes")


def fingerprint(config) -> dict:
    """What makes two runs the same experiment (a workdir holds exactly one)."""
    return {"protocol": config.protocol, "method": config.method,
            "dataset": config.data.dataset, "shots": config.data.shots, "seed": config.seed,
            "prompt": config.data.prompt,
            "arch": config.model.arch, "checkpoint": config.model.checkpoint,
            "adapter": config.adapter.to_dict(), "optim": config.optim.to_dict()}


# ---------------------------------------------------------------------------------------------
# Backbone


def compute_dtype(name: str) -> str:
    """"auto" -> bfloat16 on GPU/TPU, float32 on CPU; else `name`."""
    if name != "auto":
        return name
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def load_backbone(config, words: list[str], workdir: str):
    """(model, frozen params, tokenizer). Random weights when no checkpoint is given: the
    tokenizer is then a vocabulary of the task's own words, written to the workdir."""
    dtype = compute_dtype(config.model.dtype)
    if config.model.checkpoint:
        directory = convert.resolve(config.model.checkpoint)
        model, params = clip.load_pretrained(directory, dtype=dtype)
        return model, params, tokenizer.load_tokenizer(directory, model.config.text)
    # Each process writes its own copy: no process reads a file another is writing.
    vocab_dir = os.path.join(workdir, "tokenizer", f"process_{jax.process_index()}")
    vocab = tokenizer.write_vocab(words, vocab_dir)
    base = clip.preset(config.model.arch, dtype=dtype)
    text = dataclasses.replace(base.config.text, vocab_size=vocab, eos_token_id=vocab - 1,
                               bos_token_id=vocab - 2, pad_token_id=vocab - 1)
    model = clip.CLIP(dataclasses.replace(base.config, text=text))
    # unsafe_rbg: the same weights on every run, and 2-3x less compile time than threefry.
    params = clip.init_params(model, jax.random.key(config.model.init_seed, impl="unsafe_rbg"))
    return model, params, tokenizer.load_tokenizer(vocab_dir, model.config.text)


# ---------------------------------------------------------------------------------------------
# Protocol


@dataclasses.dataclass
class EvalSet:
    source: object
    indices: np.ndarray
    classnames: list[str]
    coop_template: str  # the dataset's CoOp template; config.data.prompt picks the one used


def _open(config, name, split, image_size):
    kwargs = {}
    if name == "shapes":
        kwargs = dict(domain=config.data.shapes_domain, image_size=image_size,
                      size=config.data.shapes_size[split])
    return data.open_split(name, split, config.data.data_dir or None,
                           config.data.split_dir or None, **kwargs)


def _provenance(sources: dict, how: dict) -> dict:
    """Whether a run's images, split and draw are those of the published tables, and why."""
    splits = {k: getattr(s, "provenance", "") for k, s in sources.items()}
    known = [getattr(s, "comparable", None) for s in sources.values()]
    out = {"splits": splits, **how}
    if None in known:  # the embedded world: nothing published to compare with
        out["comparable"] = None
    else:
        out["comparable"] = all(known) and how["fewshot_comparable"]
        if not out["comparable"]:
            logging.warning("this run is NOT comparable with published numbers: %s",
                            "; ".join([*(v for k, v in splits.items()
                                         if not getattr(sources[k], "comparable", True)),
                                       *([how["fewshot"]] if not how["fewshot_comparable"]
                                         else [])]))
    return out


def build_task(config, workdir: str, image_size: int):
    """(train source, train indices, eval sets by split name, comparability); the draw goes to
    draw.json."""
    name, shots, seed = config.data.dataset, config.data.shots, config.seed
    train = _open(config, name, "train", image_size)
    draw, how = data.draw_train(train, shots, seed)
    sources = {"train": train}
    evals: dict[str, EvalSet] = {}
    if config.protocol == "base2novel":
        base, novel = data.base_novel_split(len(train.classnames))
        keep, _ = data.relabel(train.labels()[draw], base)
        names = [train.classnames[c] for c in base]
        train_src = data.Subset(train, draw[keep], names,
                                label_map=data.label_lookup(base, len(train.classnames)))
        train_idx = np.arange(len(keep))
        test = sources["test"] = _open(config, name, "test", image_size)
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
            test = _open(config, target, "test", image_size)
            split = "test" if config.protocol == "fewshot" else target
            sources[split] = test
            evals[split] = EvalSet(test, np.arange(len(test)), test.classnames, test.template)
    if config.eval.max_examples:
        for e in evals.values():
            e.indices = e.indices[:config.eval.max_examples]
    provenance = _provenance(sources, how)
    if jax.process_index() == 0:
        data.record_draw(os.path.join(workdir, "draw.json"), dataset=name, shots=shots,
                         seed=seed, train_indices=np.asarray(draw), **provenance)
    return train_src, train_idx, evals, provenance


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


def make_optimizer(config, total_steps: int, steps_per_epoch: int = 0):
    o = config.optim
    schedule = make_schedule(o, total_steps, steps_per_epoch)
    if o.name == "sgd":
        opt = optax.chain(optax.add_decayed_weights(o.weight_decay),
                          optax.sgd(schedule, momentum=o.momentum))
    else:
        opt = optax.adamw(schedule, weight_decay=o.weight_decay)
    return opt, schedule


def make_train_step(model, spec, weights, opt, schedule, mesh):
    repl = sharding.replicated(mesh)

    def step(state, frozen, batch, prompts, text_ref):
        (loss, m), grads = jax.value_and_grad(objective.loss_fn, has_aux=True)(
            state["adapters"], frozen, model, spec, weights, batch["image"], batch["label"],
            prompts, text_ref, batch["mask"])
        updates, opt_state = opt.update(grads, state["opt_state"], state["adapters"])
        new = {"adapters": optax.apply_updates(state["adapters"], updates),
               "opt_state": opt_state, "step": state["step"] + 1, "rng": state["rng"]}
        m["lr"] = schedule(state["step"])
        m["grad_norm"] = optax.global_norm(grads)
        return new, m

    return jax.jit(step, out_shardings=(repl, repl), donate_argnums=0)


# ---------------------------------------------------------------------------------------------


def train_and_evaluate(config, workdir: str) -> dict:
    validate(config)
    if config.protocol == "pretrain":  # all CLIP parameters, contrastive, on shapes
        from adaring_jax import pretrain
        return pretrain.pretrain_and_export(config, workdir, load_backbone, fingerprint(config))
    os.makedirs(workdir, exist_ok=True)
    ckpt = None
    if config.method != "zeroshot":  # before any compute: refuse another experiment's workdir
        ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), fingerprint(config),
                                       max_to_keep=config.max_to_keep)
    mesh = sharding.make_mesh()
    logging.info("mesh: %s over %d devices, %d processes", dict(mesh.shape), jax.device_count(),
                 jax.process_count())

    image_size = convert.architecture(config.model.arch, config.model.checkpoint).vision.image_size
    train_src, train_idx, evals, provenance = build_task(config, workdir, image_size)
    model, frozen, tok = load_backbone(config, _task_words(train_src, evals), workdir)
    frozen = jax.device_put(frozen, sharding.backbone_shardings(frozen, mesh, config.model.fsdp))
    spec = adapters.spec_from_config(config, model.config)
    results = {"protocol": config.protocol, "method": config.method,
               "dataset": config.data.dataset, "shots": config.data.shots, "seed": config.seed,
               "trainable_params": adapters.count(spec), "prompt": config.data.prompt,
               "zeroshot_prompt": config.data.zeroshot_prompt, "comparability": provenance}

    state = None
    if config.method != "zeroshot":
        state, train_info = _train(config, workdir, model, frozen, tok, spec, mesh, ckpt,
                                   train_src, train_idx)
        results.update(train_info)
        if state is None:  # preempted: a checkpoint is written, nothing to evaluate yet
            return results
    results.update(_evaluate(config, model, frozen, tok, spec, mesh, evals,
                             None if state is None else state["adapters"]))
    if jax.process_index() == 0:
        _write_results(workdir, results)
    return results


def _task_words(train_src, evals) -> list[str]:
    """Words of every class name and prompt of the task (vocabulary for random weights)."""
    texts = [*data.class_prompts(train_src.classnames, "{}"), train_src.template,
             data.prompts.MMA_TEMPLATE, *presets.ENSEMBLE_TEMPLATES]
    for e in evals.values():
        texts += [*data.class_prompts(e.classnames, "{}"), e.coop_template]
    words = {w for t in texts for w in t.replace("{}", " ").replace(".", " . ")
             .replace(",", " , ").lower().split()}
    return sorted(words)


def _train(config, workdir, model, frozen, tok, spec, mesh, ckpt, train_src, train_idx):
    repl = sharding.replicated(mesh)
    ids = evaluate.prompt_ids(tok, train_src.classnames,
                              data.prompts.template(config.data.prompt, train_src.template))
    start_layer = spec.layers[0]
    n_classes = len(ids)
    padded = jax.device_put(sharding.pad_rows(ids, mesh.devices.size),
                            sharding.batch_sharded(mesh))
    prompts = objective.Prompts.cached(model, frozen, padded, start_layer, n_classes)
    templates = (train_src.template, *presets.ENSEMBLE_TEMPLATES)
    text_ref = zeroshot.class_embeddings(model, frozen, tok, train_src.classnames, templates)

    loader = data.TrainLoader(train_src, train_idx, config.optim.batch_size,
                              model.config.vision.image_size, config.seed,
                              jax.process_index(), jax.process_count(),
                              (config.data.crop_scale, 1.0), config.data.num_threads)
    total = config.optim.steps or config.optim.epochs * loader.steps_per_epoch
    opt, schedule = make_optimizer(config, total, loader.steps_per_epoch)
    a = adapters.init(spec, config.seed)
    state = jax.device_put({"adapters": a, "opt_state": opt.init(a),
                            "step": jnp.zeros((), jnp.int32),
                            "rng": jax.random.key_data(jax.random.key(config.seed))}, repl)
    start = 0
    if ckpt.latest_step() is not None:
        start = ckpt.latest_step()
        state = ckpt.restore(jax.tree.map(lambda x: jax.ShapeDtypeStruct(
            x.shape, x.dtype, sharding=x.sharding), state), start)
        logging.info("resumed from step %d of %d (checkpoint in %s)", start, total,
                     ckpt.directory)
    step_fn = make_train_step(model, spec, config.loss.to_dict(), opt, schedule, mesh)
    writer = metrics.MetricWriter(workdir)
    progress = metrics.Progress(total, start, config.log_every)
    terminated = checkpoint.install_sigterm_flag()
    info = {"steps": total, "resumed_from": start}
    t_start = time.monotonic()
    last_t, last_step = t_start, start
    for step, local in zip(range(start, total), loader.batches(start, total)):
        batch = sharding.global_batch(local, mesh)
        state, m = step_fn(state, frozen, batch, prompts, text_ref)
        done = step + 1
        if step == start:  # the first step compiles: time it apart from the steady steps
            jax.block_until_ready(m)
            last_t, last_step = time.monotonic(), done
            info["first_step_seconds"] = round(last_t - t_start, 2)
        if done % config.log_every == 0 or done == total:
            m = jax.device_get(m)
            now = time.monotonic()
            if done > last_step:
                m["step_time"] = (now - last_t) / (done - last_step)
                m["images_per_second"] = config.optim.batch_size / m["step_time"]
            last_t, last_step = now, done
            writer.write(done, m)
            progress(done)
        if _any_process(terminated()):
            ckpt.save(done, state, force=True)
            ckpt.wait()
            logging.warning("SIGTERM: saved a checkpoint at step %d in %s and stopping", done,
                            ckpt.directory)
            writer.close()
            return None, {**info, "preempted_at": done}
        if done % config.checkpoint_every == 0 or done == total:
            ckpt.save(done, state)
    ckpt.wait()
    writer.close()
    info["train_seconds"] = round(time.monotonic() - t_start, 2)
    return state, info


def _any_process(flag: bool) -> bool:
    """A flag raised on any process (all must agree before a collective save)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))


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
            out[kind][split] = round(accuracy(frozen, params, feats, e.source, e.indices), 2)
    for kind in out:
        if {"base", "novel"} <= set(out[kind]):
            out[kind]["hm"] = round(evaluate.harmonic_mean(out[kind]["base"],
                                                           out[kind]["novel"]), 2)
    if not out["adapted"]:
        out["adapted"] = dict(out["zeroshot"])  # zeroshot method: the adapted model is CLIP
    logging.info("results: %s", out)
    return out


def _write_results(workdir: str, results: dict):
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    splits = list(results["zeroshot"])
    lines = [f"| model | {' | '.join(splits)} | trainable params |",
             "|---" * (len(splits) + 2) + "|"]
    for kind in ("zeroshot", "adapted"):
        n = 0 if kind == "zeroshot" else results["trainable_params"]
        lines.append(f"| {kind} | " + " | ".join(f"{results[kind][s]:.2f}" for s in splits)
                     + f" | {n:,} |")
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(f"{results['method']} on {results['dataset']} ({results['protocol']}, "
                f"{results['shots']} shots, seed {results['seed']})\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
