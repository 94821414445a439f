r"""Input-pipeline throughput: training batches from a CoOp-layout folder of JPEGs through the
grain pipeline (decode, random resized crop, flip, CLIP normalization) at 224 px.

    python -m benchmarks.pipeline_speed --images=512 --threads=1,2,4

Writes a generated folder of `--images` photo-sized JPEGs (500 x 375, the typical size of the
CoOp datasets' images) under --root, then times `data.TrainLoader` batches with each number of
reader threads and prints images/s, and images/s per thread. An accelerator step that takes
S seconds for a global batch of B images needs B / S images/s from its host; divide by the
per-core rate to get the host cores it needs (README, "Input pipeline").
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags
from PIL import Image

from adaring_jax import data

_IMAGES = flags.DEFINE_integer("images", 512, "images in the generated folder")
_THREADS = flags.DEFINE_list("threads", ["1", "2", "4"], "reader thread counts to time")
_BATCH = flags.DEFINE_integer("batch", 32, "batch size")
_SIZE = flags.DEFINE_integer("size", 224, "output image size")
_ROOT = flags.DEFINE_string("root", "/tmp/adaring-pipeline-speed", "where the folder goes")


def make_folder(root: str, count: int, classes: int = 16) -> str:
    """A CoOp-layout oxford_pets folder of `count` textured 500 x 375 JPEGs (reused if there)."""
    top = os.path.join(root, "oxford_pets")
    split = os.path.join(top, "split_zhou_OxfordPets.json")
    if os.path.exists(split) and len(json.load(open(split))["train"]) == count:
        return root
    rng = np.random.default_rng(0)
    rows = []
    yy, xx = np.mgrid[0:375, 0:500]
    for i in range(count):
        c = i % classes
        rel = f"c{c}_{i}.jpg"
        base = rng.integers(0, 255, 3)
        waves = np.sin(xx / rng.uniform(5, 40) + yy / rng.uniform(5, 40))[..., None]
        pixels = np.clip(base + 60 * waves + rng.normal(0, 12, (375, 500, 3)), 0, 255)
        os.makedirs(os.path.join(top, "images"), exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(top, "images", rel),
                                                      quality=90)
        rows.append([rel, c, f"class_{c}"])
    with open(split, "w") as f:
        json.dump({"train": rows, "val": rows[:classes], "test": rows[:classes]}, f)
    return root


def images_per_second(source, threads: int, batch: int, size: int, steps: int) -> float:
    loader = data.TrainLoader(source, np.arange(len(source)), batch, size, seed=0,
                              num_threads=threads)
    it = loader.batches(0, steps + 1)
    next(it)  # start-up (thread pool, first reads) not timed
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - start)


def main(argv):
    del argv
    root = make_folder(_ROOT.value, _IMAGES.value)
    source = data.open_split("oxford_pets", "train", root)
    steps = max(1, len(source) // _BATCH.value - 1)
    print(f"{len(source)} JPEGs of 500 x 375 -> {_SIZE.value} px, batch {_BATCH.value}, "
          f"{os.cpu_count()} cores")
    for t in map(int, _THREADS.value):
        rate = images_per_second(source, t, _BATCH.value, _SIZE.value, steps)
        print(f"{t} threads: {rate:.0f} images/s ({rate / t:.0f} per thread)")


if __name__ == "__main__":
    app.run(main)
