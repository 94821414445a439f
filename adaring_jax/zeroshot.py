r"""Zero-shot classification with a CLIP checkpoint.

    python -m adaring_jax.zeroshot --checkpoint DIR_OR_HUB_ID --classes "cat,dog" a.jpg b.png

Each class is embedded as the normalized mean of its normalized prompt embeddings over the
templates (CLIP's prompt ensembling); an image's logits are exp(logit_scale) times its cosine
similarity to each class embedding. Prints the top-k classes per image with probabilities.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from adaring_jax import cli
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


def load_images(paths: Sequence[str], size: int) -> np.ndarray:
    """The images as one eval-transformed batch; a path that is not a readable image file is
    refused by name (checked before the model is loaded)."""
    for path in paths:
        if not os.path.isfile(path):
            raise cli.UsageError(f"{path}: no such image file"
                                 + (" (a folder: give its files)" if os.path.isdir(path) else ""))
        if os.path.getsize(path) == 0:
            raise cli.UsageError(f"{path} is empty (0 bytes), not an image")
    try:
        return preprocess.load_images(paths, size)
    except (OSError, ValueError, SyntaxError) as e:  # PIL: UnidentifiedImageError is an OSError
        raise cli.UsageError(f"cannot read an image: {e}") from None


def main(argv: Sequence[str]):
    FLAGS = flags.FLAGS

    def body():
        images = argv[1:]
        if not images:
            raise cli.UsageError("give at least one image path after the flags")
        classes = cli.class_names(FLAGS.classes)
        cli.at_least("top_k", FLAGS.top_k, 1)
        for template in FLAGS.template:
            if template.count("{}") != 1:
                raise cli.UsageError(f"--template={template!r} must hold the class name as one "
                                     "'{}'")
        for path in images:  # before the model is loaded
            if not os.path.isfile(path) or os.path.getsize(path) == 0:
                load_images([path], 1)  # raises the message
        directory = convert.resolve(FLAGS.checkpoint)
        model, params = convert.load_pretrained(directory)
        tok = tokenizer.load_tokenizer(directory, model.config.text)
        class_emb = evaluate.class_embeddings(model, params, tok, classes, FLAGS.template)
        pixels = load_images(images, model.config.vision.image_size)
        logits = np.asarray(classify(model, params, pixels, class_emb))
        for path, best in zip(images, top_k(logits, classes, min(FLAGS.top_k, len(classes)))):
            print(path)
            for name, p in best:
                print(f"  {100 * p:6.2f}%  {name}")

    return cli.run(body)


if __name__ == "__main__":
    _define_flags()
    app.run(main, flags_parser=cli.parse_flags)
