"""Loss terms, pure functions on arrays.

The generalization-aware objective (docs/method.md, "Generalization-aware loss") anchors the
adapted model to the frozen one:

    L = CE + w_text * L1(f_txt, f_txt0) + w_image * L1(f_img, f_img0) + w_kl * KL(p0 || p)
        + w_div * Div

with f0, p0 from the frozen CLIP (adapters off; text from the prompt-template ensemble, computed
once). L1 terms compare L2-normalized features, averaged over elements (as PromptSRC does).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import optax

from adaring_jax.models import clip


def masked_mean(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean over the leading axis counting only mask == 1 rows (mean of all without a mask)."""
    values = values.astype(jnp.float32)
    if mask is None:
        return values.mean()
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


PADDED_LOGIT = -1e9  # a padded class's logit: exp() of it less any real logit is exactly 0


def mask_classes(logits: jax.Array, valid: jax.Array | None) -> jax.Array:
    """Logits (..., C) with the classes where `valid` is 0 (a class bucket's padding) set to
    `PADDED_LOGIT`: their softmax share is exactly 0 and they never win an argmax; finite, so
    that KL's p0 * (log p0 - log p) stays 0 for them. `valid` None: `logits` as they are."""
    if valid is None:
        return logits
    return jnp.where(valid > 0, logits, jnp.asarray(PADDED_LOGIT, logits.dtype))


def cross_entropy(logits: jax.Array, labels: jax.Array, mask=None) -> jax.Array:
    return masked_mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels), mask)


def feature_l1(features: jax.Array, reference: jax.Array, mask=None) -> jax.Array:
    """Mean absolute difference of L2-normalized features (mean over features, then rows)."""
    diff = jnp.abs(clip.normalize(features) - clip.normalize(reference)).mean(-1)
    return masked_mean(diff, mask)


def kl_to_reference(logits: jax.Array, reference_logits: jax.Array, mask=None) -> jax.Array:
    """KL(p0 || p) averaged over the batch; p0 = softmax(reference_logits)."""
    log_p0 = jax.nn.log_softmax(reference_logits, axis=-1)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return masked_mean(jnp.sum(jnp.exp(log_p0) * (log_p0 - log_p), axis=-1), mask)


def generalization_aware(terms: Mapping[str, jax.Array], weights: Mapping[str, float]
                         ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CE plus the weighted anchor terms. `terms` holds 'ce' and any of 'text_l1', 'image_l1',
    'kl', 'diversity'; a term with weight 0 is left out. Returns (loss, metrics)."""
    loss = terms["ce"]
    for name, value in terms.items():
        if name != "ce" and weights.get(name, 0.0):
            loss = loss + weights[name] * value
    return loss, {"loss": loss, **terms}
