r"""Zero-shot classification with a CLIP checkpoint.

    python -m adaring_jax.zeroshot --checkpoint DIR_OR_HUB_ID --classes "cat,dog" a.jpg b.png

Each class is embedded as the normalized mean of its normalized prompt embeddings over the
templates (CLIP's prompt ensembling); an image's logits are exp(logit_scale) times its cosine
similarity to each class embedding. Prints the top-k classes per image with probabilities.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from adaring_jax.job import evaluate
from adaring_jax.models import clip, convert, preprocess, tokenizer

DEFAULT_TEMPLATES = ("a photo of a {}.",)


def classify(model: clip.CLIP, params, pixels: jax.Array, class_emb: jax.Array) -> jax.Array:
    """(B, C) logits of images against class embeddings."""
    return clip.scaled_cosine(clip.encode_image(model, params, pixels), class_emb,
                              params["logit_scale"])


def top_k(logits: np.ndarray, classnames: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """Per row, the k most likely (class, probability) pairs."""
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))
    order = np.argsort(-probs, axis=-1)[:, :k]
    return [[(classnames[j], float(p[j])) for j in row] for p, row in zip(probs, order)]


def _define_flags():
    # Defined only when run as a program, so that importing this module defines no flags.
    flags.DEFINE_string("checkpoint", None, "Hugging Face CLIP directory or hub id.",
                        required=True)
    flags.DEFINE_list("classes", None, "Comma-separated class names.", required=True)
    flags.DEFINE_multi_string("template", list(DEFAULT_TEMPLATES),
                              "Prompt template with {} for the class name; repeat to ensemble.")
    flags.DEFINE_integer("top_k", 5, "How many classes to print per image.")


def main(argv: Sequence[str]):
    FLAGS = flags.FLAGS
    images = argv[1:]
    if not images:
        raise app.UsageError("give at least one image path after the flags")
    directory = convert.resolve(FLAGS.checkpoint)
    model, params = convert.load_pretrained(directory)
    tok = tokenizer.load_tokenizer(directory, model.config.text)
    class_emb = evaluate.class_embeddings(model, params, tok, FLAGS.classes, FLAGS.template)
    pixels = preprocess.load_images(images, model.config.vision.image_size)
    logits = np.asarray(classify(model, params, pixels, class_emb))
    for path, best in zip(images, top_k(logits, FLAGS.classes, FLAGS.top_k)):
        print(path)
        for name, p in best:
            print(f"  {100 * p:6.2f}%  {name}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
