"""The training objective: the adapted CLIP's class logits and the generalization-aware loss.

`loss_fn` is differentiated with respect to its first argument, the adapter pytree, only: the
frozen backbone is a separate argument, so no backbone gradient is ever computed.

Class prompts are fixed, so their text-tower work below the first adapted layer is the same
every step: `Prompts.cached` runs it once, and the ids are cut at the longest end-of-text
position (under the causal mask later positions cannot change it): docs/method.md, "Fixed
prompts and the frozen trunk".
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from adaring_jax import adapters
from adaring_jax.job import losses
from adaring_jax.models import clip


@struct.dataclass
class Prompts:
    """Class prompt ids (C, L) and, optionally, their frozen hidden states after text layers
    [0, start) (C, L, width). Rows past `count` are padding (to shard C evenly); their
    features are dropped. Or, in a class bucket (`job/buckets.py`), `valid` (C,) marks the
    real classes: the features of all C rows are kept and the loss masks the others."""
    ids: jax.Array
    hidden: jax.Array | None = None
    start: int = struct.field(pytree_node=False, default=0)
    count: int | None = struct.field(pytree_node=False, default=None)
    valid: jax.Array | None = None

    @staticmethod
    def truncate(ids, eos_token_id: int) -> np.ndarray:
        """Cut (C, L) ids after the longest end-of-text position (exact under causal masking)."""
        ids = np.asarray(ids)
        last = int(np.asarray(clip.eos_positions(ids, eos_token_id)).max())
        return ids[:, :last + 1]

    @classmethod
    def cached(cls, model: clip.CLIP, frozen, ids, start: int, count: int | None = None,
               valid=None) -> "Prompts":
        ids = jnp.asarray(ids, jnp.int32)
        if start == 0:
            return cls(ids, count=count, valid=valid)
        hidden = jax.jit(lambda p, t: model.apply({"params": p}, t, start,
                                                  method=clip.CLIP.text_hidden))(frozen, ids)
        return cls(ids, hidden, start, count, valid)


def text_start(model: clip.CLIP, spec) -> int:
    """The text layers below this one are frozen for every prompt (`Prompts.cached`)."""
    start = spec.first_block("text")
    return model.config.text.layers if start is None else start


def encode_prompts(model: clip.CLIP, frozen, prompts, text_adapters) -> jax.Array:
    if not isinstance(prompts, Prompts):
        prompts = Prompts(jnp.asarray(prompts, jnp.int32))
    if prompts.hidden is None:
        txt = clip.encode_text(model, frozen, prompts.ids, text_adapters)
    else:
        txt = model.apply({"params": frozen}, prompts.hidden, prompts.ids, prompts.start,
                          text_adapters, method=clip.CLIP.text_from_hidden)
    return txt if prompts.count is None else txt[:prompts.count]


def with_dropout_keys(layer: dict, rng) -> dict:
    """The towers' adapters with a dropout key each where they use one (dropout on weight
    updates, e.g. LoRA's), for training."""
    if rng is None:
        return layer
    return {t: (dataclasses.replace(a, key=jax.random.fold_in(rng, i))
                if a is not None and a.updates and a.dropout > 0 else a)
            for i, (t, a) in enumerate(sorted(layer.items()))}


def loss_fn(adapter_params, frozen, model: clip.CLIP, spec: adapters.Spec,
            weights: Mapping[str, float], pixels, labels, prompts, text_reference, mask=None,
            rng=None):
    """Generalization-aware loss on one batch; `mask` (B,) drops padded/unreadable examples.

    prompts: the training prompt of each class; text_reference: (C, D) the frozen model's
    zero-shot class features (template ensemble). Returns (loss, metrics).
    """
    mask = jnp.ones(labels.shape, jnp.float32) if mask is None else mask
    layer = with_dropout_keys(adapters.layer_adapters(adapter_params, spec), rng)
    # The frozen vision layers below the first adapted block run once; the adapted pass and
    # the frozen reference pass (img0) branch from their output.
    start = spec.first_block("vision")
    start = model.config.vision.layers if start is None else start
    trunk = model.apply({"params": frozen}, pixels, start, method=clip.CLIP.image_hidden)
    img = model.apply({"params": frozen}, trunk, start, layer["vision"],
                      method=clip.CLIP.image_from_hidden)
    txt = encode_prompts(model, frozen, prompts, layer["text"])
    scale = frozen["logit_scale"]
    logits = clip.scaled_cosine(img, txt, scale)
    # Class buckets: the padded classes leave the softmax and the per-class means.
    valid = prompts.valid if isinstance(prompts, Prompts) else None
    logits = losses.mask_classes(logits, valid)
    terms = {"ce": losses.cross_entropy(logits, labels, mask)}
    if weights.get("text_l1", 0.0):
        terms["text_l1"] = losses.feature_l1(txt, text_reference, valid)
    if weights.get("image_l1", 0.0) or weights.get("kl", 0.0):
        # The frozen reference needs no gradient and no per-layer code: it runs the layer
        # scan even when the adapted pass is unrolled (model.fast_step), so XLA compiles one
        # block for it instead of one per layer.
        rolled = clip.CLIP(dataclasses.replace(model.config, unrolled=False))
        img0 = jax.lax.stop_gradient(rolled.apply({"params": frozen}, trunk, start,
                                                  method=clip.CLIP.image_from_hidden))
        if weights.get("image_l1", 0.0):
            terms["image_l1"] = losses.feature_l1(img, img0, mask)
        if weights.get("kl", 0.0):
            terms["kl"] = losses.kl_to_reference(
                logits, losses.mask_classes(clip.scaled_cosine(img0, text_reference, scale),
                                            valid), mask)
    terms.update(adapters.regularizer_terms(adapter_params, spec, weights))
    loss, metrics = losses.generalization_aware(terms, weights)
    metrics["accuracy"] = losses.masked_mean(logits.argmax(-1) == labels, mask)
    return loss, metrics
