"""Evaluation: class text features, sharded accuracy with exact (correct, count) sums.

Accuracy is reduced as sums of correct predictions and of mask, so padded or unreadable
examples and examples split across hosts are each counted exactly once.
"""

from __future__ import annotations

import collections
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from adaring_jax import adapters, data
from adaring_jax.job import buckets, losses, objective, sharding
from adaring_jax.models import clip


def prompt_ids(tok, classnames, template: str) -> np.ndarray:
    """(C, L) ids of one prompt per class (`data.class_prompts`), cut after the longest
    end-of-text token."""
    ids = tok(data.class_prompts(classnames, template))
    return objective.Prompts.truncate(ids, tok.eos_token_id)


def make_class_features(model: clip.CLIP, spec: adapters.Spec, mesh, bucket: bool = False):
    """jitted (frozen, adapter params, ids (C, L)) -> (C, D) unit-norm class features, with
    the prompt batch sharded over `data` (zero-shot: `adapters.NONE` and `{}`). With `bucket`,
    the ids are padded to their class bucket (`job/buckets.py`) and the result is the pair
    ((C', D) features, (C',) mask of the real classes), which the accuracies take as well."""

    @jax.jit
    def run(frozen, adapter_params, ids):
        layer = adapters.layer_adapters(adapter_params, spec)["text"]
        return clip.normalize(clip.encode_text(model, frozen, ids, layer))

    def class_features(frozen, adapter_params, ids):
        if bucket:
            ids, valid = buckets.bucket_ids(ids, mesh.devices.size,
                                            model.config.text.context_length)
            ids = jax.device_put(ids, sharding.batch_sharded(mesh))
            return run(frozen, adapter_params, ids), jnp.asarray(valid)
        n = len(ids)
        padded = sharding.pad_rows(np.asarray(ids), mesh.devices.size)
        ids = jax.device_put(padded, sharding.batch_sharded(mesh))
        return run(frozen, adapter_params, ids)[:n]

    return class_features


def _global_batch(batch_size: int, mesh) -> int:
    """`batch_size` rounded up to a multiple of the device count (padding is masked out)."""
    devices = mesh.devices.size
    return -(-batch_size // devices) * devices


def _correct(img, class_feats, batch):
    """Masked count of correct argmax predictions. Unscaled cosines: the argmax is the same
    as that of CLIP's scaled logits. `class_feats`: (C, D), or a class bucket's (features,
    mask of the real classes), whose padded classes never win."""
    feats, valid = class_feats if isinstance(class_feats, tuple) else (class_feats, None)
    logits = losses.mask_classes(clip.normalize(img) @ feats.T, valid)
    return ((logits.argmax(-1) == batch["label"]).astype(jnp.float32) * batch["mask"]).sum()


IN_FLIGHT = 2  # evaluation batches dispatched ahead of the one whose counts are read


def _summed(counts, args, source, indices, mesh, batch_size, image_size, num_threads):
    """Sums over the evaluation batches of `counts(*args, batch)`, a tuple whose last entry
    is the number of examples counted, as ((percent, counted), ...) for the other entries.
    Up to `IN_FLIGHT` batches are dispatched before the oldest one's counts are read, so the
    host prepares the next batch while the device computes (and queued inputs stay bounded);
    the per-batch counts are whole numbers, summed exactly on the host."""
    pending, sums = collections.deque(), None

    def read_oldest():
        got = np.asarray(jax.device_get(pending.popleft()), np.float64)
        return got if sums is None else sums + got

    for local in data.eval_batches(source, indices, batch_size, image_size,
                                   jax.process_index(), jax.process_count(), num_threads):
        pending.append(counts(*args, sharding.global_batch(local, mesh)))
        if len(pending) > IN_FLIGHT:
            sums = read_oldest()
    while pending:
        sums = read_oldest()
    total = max(float(sums[-1]), 1.0)
    return tuple((100.0 * float(c) / total, int(sums[-1])) for c in sums[:-1])


def make_accuracy(model: clip.CLIP, spec: adapters.Spec, mesh, image_size: int,
                  batch_size: int, num_threads: int = 0):
    """accuracy(frozen, adapter params, class features, source, indices) ->
    (percent correct, images counted); unreadable images are not counted. The global batch is
    `batch_size` rounded up to a multiple of the device count (padding is masked out), so
    CoOp's 100 runs on any mesh."""
    batch_size = _global_batch(batch_size, mesh)

    @jax.jit
    def counts(frozen, adapter_params, class_feats, batch):
        layer = adapters.layer_adapters(adapter_params, spec)["vision"]
        img = clip.encode_image(model, frozen, batch["image"], layer)
        return _correct(img, class_feats, batch), batch["mask"].sum()

    def accuracy(frozen, adapter_params, class_feats, source, indices) -> tuple[float, int]:
        (result,) = _summed(counts, (frozen, adapter_params, class_feats), source, indices,
                            mesh, batch_size, image_size, num_threads)
        return result

    return accuracy


def make_joint_accuracy(model: clip.CLIP, spec: adapters.Spec, mesh, image_size: int,
                        batch_size: int, num_threads: int = 0):
    """joint(frozen, adapter params, adapted class features, zero-shot class features, source,
    indices) -> ((percent, counted) adapted, (percent, counted) zero-shot) in one pass over the
    images: each is decoded once, and the frozen vision layers below the first adapted block
    run once for both (CoOp's vision tower is all frozen: one image feature for both). The
    same accuracies as two `make_accuracy` passes (tested bit for bit)."""
    batch_size = _global_batch(batch_size, mesh)
    start = spec.first_block("vision")
    start = model.config.vision.layers if start is None else start

    @jax.jit
    def counts(frozen, adapter_params, adapted_feats, zeroshot_feats, batch):
        layer = adapters.layer_adapters(adapter_params, spec)["vision"]
        params = {"params": frozen}
        trunk = model.apply(params, batch["image"], start, method=clip.CLIP.image_hidden)
        img = model.apply(params, trunk, start, layer, method=clip.CLIP.image_from_hidden)
        img0 = model.apply(params, trunk, start, method=clip.CLIP.image_from_hidden)
        return (_correct(img, adapted_feats, batch), _correct(img0, zeroshot_feats, batch),
                batch["mask"].sum())

    def joint(frozen, adapter_params, adapted_feats, zeroshot_feats, source, indices):
        return _summed(counts, (frozen, adapter_params, adapted_feats, zeroshot_feats), source,
                       indices, mesh, batch_size, image_size, num_threads)

    return joint


def class_embeddings(model: clip.CLIP, params, tok,
                     classnames: Sequence[str], templates: Sequence[str] = ("a photo of a {}.",),
                     batch_size: int = 256, fixed_batch: bool = False) -> jax.Array:
    """(C, D) unit-norm class embeddings: the mean over templates of unit-norm text features
    of the prompts `data.class_prompts` builds. `fixed_batch`: every batch padded to
    `batch_size` prompts, so that one program serves any class count (class buckets)."""
    per_template = [data.class_prompts(classnames, t) for t in templates]
    prompts = [p for row in zip(*per_template) for p in row]  # class-major
    encode = jax.jit(lambda p, ids: clip.normalize(clip.encode_text(model, p, ids)))
    def batch(i):
        ids = tok(prompts[i:i + batch_size])
        if not fixed_batch:
            return encode(params, ids)
        n = len(ids)
        return encode(params, buckets.pad_rows(ids, batch_size))[:n]

    feats = [batch(i) for i in range(0, len(prompts), batch_size)]
    feats = jnp.concatenate(feats).reshape(len(classnames), len(templates), -1)
    return clip.normalize(feats.mean(axis=1))


def harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)
