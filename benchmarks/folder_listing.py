r"""Listing and splitting a class folder the size of a real dataset, the work `folder:PATH`
does before a run starts (no image is opened).

    python -m benchmarks.folder_listing --files=100000 --classes=1000

Writes a tree of `--files` empty `.jpg` files in `--classes` class folders (ImageNet's shape:
1,000 classes; 1.28M files in all) under --root, reused when there, then times
`data.own.load("folder:ROOT")` -- the listing, the class names, the seeded 50/20/30 split and
its digest -- `--repeats` times and prints the best, files/s, and what that rate means for
ImageNet's 1.28M files. The first timing after writing the tree is warm (the file system cache
holds the directories); a cold cache on network storage is slower.
"""

from __future__ import annotations

import os
import time

from absl import app, flags

from adaring_jax.data import own

_FILES = flags.DEFINE_integer("files", 100_000, "files in the generated tree")
_CLASSES = flags.DEFINE_integer("classes", 1000, "class folders")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timings (the best is reported)")
_ROOT = flags.DEFINE_string("root", "/tmp/adaring-folder-listing", "where the tree goes")

IMAGENET_FILES = 1_281_167


def make_tree(root: str, files: int, classes: int) -> str:
    """`files` empty JPEG names spread over `classes` folders (reused if complete)."""
    top = os.path.join(root, f"{files}x{classes}")
    done = os.path.join(root, f".{files}x{classes}.done")
    if os.path.exists(done):
        return top
    for c in range(classes):
        d = os.path.join(top, f"n{c:08d}_class_{c}")
        os.makedirs(d, exist_ok=True)
        for i in range(c, files, classes):
            open(os.path.join(d, f"image_{i:07d}.JPEG"), "w").close()
    open(done, "w").close()
    return top


def main(argv):
    del argv
    top = make_tree(_ROOT.value, _FILES.value, _CLASSES.value)
    times = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        table = own.load(f"folder:{top}")
        table.digest()
        times.append(time.perf_counter() - start)
    n = sum(len(r) for r in table.rows.values())
    best = min(times)
    print(f"listed and split {n:,} files in {len(table.classnames)} classes: best {best:.2f} s "
          f"of {len(times)} ({n / best:,.0f} files/s); ImageNet's {IMAGENET_FILES:,} files at "
          f"this rate: {IMAGENET_FILES / (n / best):.1f} s")


if __name__ == "__main__":
    app.run(main)
