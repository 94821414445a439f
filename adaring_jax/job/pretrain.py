"""Contrastive pretraining of a small CLIP on the `shapes` world's pretraining domain, exported
in Hugging Face format (the embedded default checkpoint is made this way).

All parameters train with the CLIP loss, but with multi-positive targets: a caption that names
only a colour ("something red") is a positive for every image of that colour in the batch, one
that names only a shape for every image of that shape, and a full caption for every image of
that class. Images are never repeated: step s renders examples s*B .. s*B+B-1 of the
procedural world, so each batch is a pure function of the step (exact resume, any number of
processes). At the end the model is evaluated zero-shot on both domains and written with its
tokenizer to `workdir/export`, a directory `convert.load_pretrained` reads like any CLIP.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adaring_jax import adapters
from adaring_jax.data import shapes
from adaring_jax.errors import Stopped
from adaring_jax import atomic
from adaring_jax.job import (backbone, checkpoint, evaluate, loop, metrics, sharding,
                             skeleton, validation, workdir as workdirs)
from adaring_jax.models import clip, convert, preprocess

_COLOUR_WORDS = {c: i for i, c in enumerate(shapes.COLOURS)}
_SHAPE_WORDS = {s: i for i, s in enumerate(shapes.SHAPES)}


def caption_attributes(text: str) -> tuple[int, int]:
    """(colour id or -1, shape id or -1) named by a caption."""
    words = shapes.words(text)
    colour = next((_COLOUR_WORDS[w] for w in words if w in _COLOUR_WORDS), -1)
    shape = next((_SHAPE_WORDS[w] for w in words if w in _SHAPE_WORDS), -1)
    return colour, shape


def positives(labels, cap_colour, cap_shape) -> jax.Array:
    """(B_img, B_cap) 1 where caption j is true of image i."""
    colour = jnp.asarray(shapes.CLASS_COLOUR)[labels]
    shape = jnp.asarray(shapes.CLASS_SHAPE)[labels]
    ok_c = (cap_colour[None, :] < 0) | (cap_colour[None, :] == colour[:, None])
    ok_s = (cap_shape[None, :] < 0) | (cap_shape[None, :] == shape[:, None])
    return (ok_c & ok_s).astype(jnp.float32)


def multi_positive_clip_loss(img, txt, logit_scale, pos) -> jax.Array:
    """Symmetric cross-entropy of scaled cosine logits against row-normalized positives."""
    logits = clip.scaled_cosine(img, txt, logit_scale)
    i2t = optax.softmax_cross_entropy(logits, pos / pos.sum(1, keepdims=True))
    t2i = optax.softmax_cross_entropy(logits.T, pos.T / pos.T.sum(1, keepdims=True))
    return (i2t.mean() + t2i.mean()) / 2


class Batches:
    """Step -> this process's share of the global batch: images, caption ids, attributes."""

    def __init__(self, tok, image_size: int, batch: int, seed: int):
        self.source = shapes.ShapesSource("train", "pretrain", size=2 ** 62,
                                          image_size=image_size, seed=seed)
        self.tok, self.batch = tok, batch
        self.local = batch // jax.process_count()
        self.offset = jax.process_index() * self.local

    def __call__(self, step: int) -> dict:
        idx = np.arange(step * self.batch + self.offset,
                        step * self.batch + self.offset + self.local)
        captions = [self.source.caption(i) for i in idx]
        attrs = np.asarray([caption_attributes(c) for c in captions], np.int32)
        return {"image": preprocess.normalize(self.source.render_batch(idx)),
                "ids": self.tok(captions), "label": (idx % shapes.NUM_CLASSES).astype(np.int32),
                "cap_colour": attrs[:, 0], "cap_shape": attrs[:, 1]}


def run(config, workdir: str) -> dict:
    """Train all CLIP parameters contrastively, evaluate zero-shot, export to workdir/export.
    Checks the config and the workdir before writing anything."""
    validation.validate(config)
    return skeleton.run(
        config, workdir,
        lambda: (*backbone.load(config, shapes.caption_vocabulary()), sharding.make_mesh()),
        lambda prepared: _pretrain(config, workdir, *prepared))


def _pretrain(config, workdir, model, params, tok, mesh) -> dict:
    repl = sharding.replicated(mesh)
    o = config.optim
    total = o.steps
    schedule = optax.warmup_cosine_decay_schedule(0.0, o.lr, min(o.warmup_steps, total - 1),
                                                  total)
    opt = optax.adamw(schedule, weight_decay=o.weight_decay)
    state = jax.device_put({"params": params, "opt_state": opt.init(params),
                            "step": jnp.zeros((), jnp.int32)}, repl)

    def step_fn(state, batch):
        def loss_fn(p):
            img = clip.encode_image(model, p, batch["image"])
            txt = clip.encode_text(model, p, batch["ids"])
            pos = positives(batch["label"], batch["cap_colour"], batch["cap_shape"])
            return multi_positive_clip_loss(img, txt, p["logit_scale"], pos)
        loss, grads = jax.value_and_grad(loss_fn)(state["params"])
        updates, opt_state = opt.update(grads, state["opt_state"], state["params"])
        new_params = optax.apply_updates(state["params"], updates)
        # CLIP clamps the temperature at 100 (logit scale ln 100).
        new_params["logit_scale"] = jnp.minimum(new_params["logit_scale"], jnp.log(100.0))
        return ({"params": new_params, "opt_state": opt_state, "step": state["step"] + 1},
                {"loss": loss, "lr": schedule(state["step"]), "grad_norm": optax.global_norm(grads),
                 "logit_scale": jnp.exp(new_params["logit_scale"])})

    step_fn = jax.jit(step_fn, out_shardings=(repl, repl), donate_argnums=0)
    make = Batches(tok, model.config.vision.image_size, o.batch_size, config.seed)
    batches = lambda start, stop: (sharding.global_batch(make(s), mesh)  # noqa: E731
                                   for s in range(start, stop))
    writer = metrics.MetricWriter(workdir)
    with checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 max_to_keep=config.max_to_keep) as ckpt:
        try:
            outcome = loop.run(step_fn, state, batches, total, ckpt, writer,
                               log_every=config.log_every,
                               checkpoint_every=config.checkpoint_every,
                               images_per_step=o.batch_size)
        finally:
            writer.close()
    if outcome.state is None:
        raise Stopped(f"stopped by SIGTERM at step {outcome.info['preempted_at']}: its "
                      "checkpoint is saved; run the same command to resume")
    params = outcome.state["params"]
    results = {**outcome.info,
               "zeroshot": zeroshot_accuracy(config, model, params, tok, mesh)}
    if jax.process_index() == 0:
        export = os.path.join(workdir, "export")
        convert.save_pretrained(model, jax.device_get(params), export,
                                tokenizer_dir=tok_dir(tok))
        atomic.write_json(os.path.join(workdir, workdirs.RESULTS), results)
        metrics.note(f"exported to {export}; zero-shot accuracy {results['zeroshot']}")
    return results


def tok_dir(tok) -> str:
    return tok.hf.name_or_path


def zeroshot_accuracy(config, model, params, tok, mesh) -> dict[str, float]:
    """Zero-shot accuracy (%) over all 64 classes in each rendering domain (test split)."""
    class_features = evaluate.make_class_features(model, adapters.NONE, mesh)
    accuracy = evaluate.make_accuracy(model, adapters.NONE, mesh, model.config.vision.image_size,
                                      config.eval.batch_size, config.data.num_threads)
    ids = evaluate.prompt_ids(tok, shapes.CLASSNAMES, shapes.TEMPLATE)
    feats = class_features(params, {}, ids)
    out = {}
    for domain in shapes.DOMAINS:
        src = shapes.ShapesSource("test", domain, size=config.eval.size,
                                  image_size=model.config.vision.image_size)
        out[domain] = round(accuracy(params, {}, feats, src, np.arange(len(src)))[0], 2)
    return out
