"""The training objective: the adapted CLIP's class logits and the generalization-aware loss.

`loss_fn` is differentiated with respect to its first argument, the adapter pytree, only: the
frozen backbone is a separate argument, so no backbone gradient is ever computed.
"""

from __future__ import annotations

from typing import Mapping

import jax

from adaring_jax import adapters, losses
from adaring_jax.models import clip


def adapted_features(model: clip.CLIP, frozen, adapter_params, spec: adapters.AdapterSpec,
                     pixels, prompt_ids) -> tuple[jax.Array, jax.Array]:
    """(image features (B, D), class text features (C, D)) with the adapters applied."""
    layer = adapters.layer_adapters(adapter_params, spec)
    img = clip.encode_image(model, frozen, pixels, layer["vision"])
    txt = clip.encode_text(model, frozen, prompt_ids, layer["text"])
    return img, txt


def loss_fn(adapter_params, frozen, model: clip.CLIP, spec: adapters.AdapterSpec,
            weights: Mapping[str, float], pixels, labels, prompt_ids, text_reference):
    """Generalization-aware loss on one batch.

    prompt_ids: (C, L) the training prompt of each class; text_reference: (C, D) the frozen
    model's zero-shot class features (template ensemble). Returns (loss, metrics).
    """
    img, txt = adapted_features(model, frozen, adapter_params, spec, pixels, prompt_ids)
    scale = frozen["logit_scale"]
    logits = losses.cosine_logits(img, txt, scale)
    terms = {"ce": losses.cross_entropy(logits, labels)}
    if weights.get("text_l1", 0.0):
        terms["text_l1"] = losses.feature_l1(txt, text_reference)
    if weights.get("image_l1", 0.0) or weights.get("kl", 0.0):
        img0 = jax.lax.stop_gradient(clip.encode_image(model, frozen, pixels))
        if weights.get("image_l1", 0.0):
            terms["image_l1"] = losses.feature_l1(img, img0)
        if weights.get("kl", 0.0):
            terms["kl"] = losses.kl_to_reference(
                logits, losses.cosine_logits(img0, text_reference, scale))
    if weights.get("diversity", 0.0):
        terms["diversity"] = adapters.diversity(adapter_params, spec)
    loss, metrics = losses.generalization_aware(terms, weights)
    metrics["accuracy"] = (logits.argmax(-1) == labels).mean()
    return loss, metrics
