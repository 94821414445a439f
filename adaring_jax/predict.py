r"""Classify image files with a finished run's adapted CLIP.

    python -m adaring_jax.predict --workdir=runs/default [--top_k=5] [--out=FILE.csv|.json] \
        [--classes=a,b,c | --split=novel] [--batch_size=100] PATH...

PATHs are image files or folders (searched recursively for image files; hidden files are
skipped). The run's backbone comes from its recorded checkpoint, its adapters from its last
Orbax step, its class names and prompt template from its task (`runs.py`); every method works,
zero-shot included. Classes default to all classes of the run's dataset; `--split` takes one
evaluation split's (e.g. base or novel), `--classes` any names (open vocabulary: the adapted
text tower prompts whatever it is given). Probabilities are CLIP's: softmax over classes of
logit_scale * cosine. Unreadable files are skipped and counted. Prints one line per image
(file, top-k classes with probabilities) and writes CSV or JSON when `--out` is given.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from typing import Sequence

import jax
import numpy as np
from absl import app, flags

from adaring_jax import adapters, cli, data
from adaring_jax import atomic
from adaring_jax.job import evaluate, metrics, outputs, runs, sharding
from adaring_jax.data import own
from adaring_jax.data.sources import FolderSource
from adaring_jax.errors import UserError
from adaring_jax.models import clip

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
OUT_SUFFIXES = (".csv", ".json")


class PredictError(UserError, ValueError):
    """Bad paths or options for predict."""


def image_files(paths: Sequence[str]) -> list[str]:
    """Files named directly, plus the image files under named folders (recursive, sorted,
    hidden entries skipped). A path that does not exist is an error."""
    out = []
    for path in paths:
        if os.path.isfile(path):
            out.append(path)
        elif os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out += [os.path.join(root, f) for f in sorted(files)
                        if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)]
        else:
            raise PredictError(f"no such file or folder: {path}")
    if not out:
        raise PredictError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in: "
                           f"{', '.join(paths)}")
    return out


def check_out(out: str, overwrite: bool = False) -> None:
    """Refuse an --out that predict must not write (before any work): not .csv or .json, inside
    a run directory, an existing file without --overwrite, a missing or read-only folder."""
    if not out:
        return
    if not out.lower().endswith(OUT_SUFFIXES) and not os.path.isdir(out):
        raise PredictError(f"--out={out}: give a .csv or .json file name")
    outputs.check(out, "--out", "file", overwrite)


def make_predictor(run: runs.Loaded, classnames: Sequence[str], template: str, mesh):
    """probabilities(batch) -> (B, C) class probabilities of a batch of eval-transformed
    images, with the run's adapters in both towers."""
    class_feats = evaluate.make_class_features(run.model, run.spec, mesh)(
        run.frozen, run.adapters, evaluate.prompt_ids(run.tok, classnames, template))

    @jax.jit
    def probabilities(frozen, params, feats, pixels):
        layer = adapters.layer_adapters(params, run.spec)["vision"]
        img = clip.encode_image(run.model, frozen, pixels, layer)
        return jax.nn.softmax(clip.scaled_cosine(img, feats, frozen["logit_scale"]), axis=-1)

    return lambda pixels: probabilities(run.frozen, run.adapters, class_feats, pixels)


def predict(run: runs.Loaded, files: Sequence[str], classnames: Sequence[str], template: str,
            top_k: int = 5, batch_size: int = 100, num_threads: int = 0):
    """(rows, skipped): per readable file (path, [(class, probability)] best first), and the
    files that could not be read."""
    if len(set(classnames)) != len(classnames) or not all(classnames):
        raise PredictError(f"class names must be non-empty and distinct: {list(classnames)}")
    mesh = sharding.make_mesh()
    batch_size = -(-batch_size // mesh.devices.size) * mesh.devices.size
    probabilities = make_predictor(run, classnames, template, mesh)
    source = FolderSource("", [(os.path.abspath(f), 0) for f in files], classnames, template,
                          "", "predict")
    size = run.model.config.vision.image_size
    k = min(top_k, len(classnames))
    rows, skipped = [], []
    progress = metrics.Progress(-(-len(files) // batch_size), 0) if len(files) > 10 * batch_size \
        else None
    batches = data.eval_batches(source, np.arange(len(files)), batch_size, size,
                                num_threads=num_threads)
    for b, batch in enumerate(batches):
        probs = np.asarray(probabilities(sharding.global_batch(batch, mesh)["image"]))
        for j in range(len(probs)):
            i = b * batch_size + j
            if i >= len(files):
                break
            if not batch["mask"][j]:
                skipped.append(files[i])
                continue
            best = np.argsort(-probs[j], kind="stable")[:k]
            rows.append((files[i], [(classnames[c], float(probs[j, c])) for c in best]))
        if progress is not None:
            progress(b + 1)
    if progress is not None:
        progress.finish()
    return rows, skipped


def write(out: str, rows, skipped, overwrite: bool = False) -> None:
    """CSV (file, class_1, p_1, ...) or JSON ({"predictions": [...], "skipped": [...]})."""
    f = io.StringIO(newline="")
    if out.lower().endswith(".json"):
        json.dump({"predictions": [{"file": path, "top_k": [{"class": c, "probability": p}
                                                             for c, p in best]}
                                   for path, best in rows],
                   "skipped": list(skipped)}, f, indent=2)
    else:
        k = max((len(best) for _, best in rows), default=0)
        w = csv.writer(f)
        w.writerow(["file", *[x for i in range(1, k + 1) for x in (f"class_{i}", f"p_{i}")]])
        for path, best in rows:
            w.writerow([path, *[x for c, p in best for x in (c, f"{p:.6f}")]])
    atomic.write_text(out, f.getvalue(), replace=overwrite)


def _define_flags():
    # Defined only when run as a program: importing this module defines no flags.
    flags.DEFINE_string("workdir", None, "A finished run's directory.", required=True)
    flags.DEFINE_integer("top_k", 5, "Classes shown per image (>= 1).")
    flags.DEFINE_string("out", "", "Write the predictions to this .csv or .json file (not "
                        "inside a run directory).")
    flags.DEFINE_bool("overwrite", False, "Replace --out if it exists.")
    flags.DEFINE_list("classes", [], "Class names to choose from (default: the run's).")
    flags.DEFINE_string("split", "", "Use the class names of this evaluation split of the run "
                        "(e.g. base, novel).")
    flags.DEFINE_integer("batch_size", 100, "Images per batch (>= 1).")
    flags.DEFINE_integer("num_threads", 4, "Image decoding threads (>= 1).")


def main(argv):
    f = flags.FLAGS

    def body():
        if len(argv) < 2:
            raise PredictError("give image files or folders after the flags")
        if f.classes and f.split:
            raise PredictError("give --classes or --split, not both")
        for flag in ("top_k", "batch_size", "num_threads"):
            cli.at_least(flag, f[flag].value, 1)
        check_out(f.out, f.overwrite)
        files = image_files(argv[1:])
        own.check_utf8(files, "the images given")
        run = runs.load(f.workdir)
        classnames, template = run.classes(f.split)
        if f.classes:
            classnames = cli.class_names(f.classes)
        rows, skipped = predict(run, files, classnames, template, f.top_k, f.batch_size,
                                f.num_threads)
        for path, best in rows:
            print(path + "  " + "  ".join(f"{c} {100 * p:.1f}%" for c, p in best))
        if skipped:
            print(f"skipped {len(skipped)} unreadable file(s) of {len(files)}", file=sys.stderr)
        if f.out:
            write(f.out, rows, skipped, f.overwrite)
            print(f"wrote {len(rows)} predictions to {f.out}", file=sys.stderr)

    return cli.run(body, cli.WROTE_NOTHING)


if __name__ == "__main__":
    _define_flags()
    app.run(main, flags_parser=cli.parse_flags)
