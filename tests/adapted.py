"""The adapted CLIP's features, for tests that compare methods, materializations and towers
(the job itself goes through `objective.loss_fn` and `evaluate`)."""

from adaring_jax import adapters
from adaring_jax.job import objective
from adaring_jax.models import clip


def features(model, frozen, adapter_params, spec, pixels, prompts):
    """(image features (B, D), class text features (C, D)) with the adapters applied.
    `prompts` is an `objective.Prompts` or a (C, L) id array."""
    layer = adapters.layer_adapters(adapter_params, spec)
    img = clip.encode_image(model, frozen, pixels, layer["vision"])
    return img, objective.encode_prompts(model, frozen, prompts, layer["text"])
