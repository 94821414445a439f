"""Rendering speed of the procedural `shapes` world on one CPU core.

    python -m benchmarks.shapes_speed

Prints images/second of `ShapesSource.render_batch` for each domain at image sizes 32 and 64
(best of a few repeats, batches of 256), and whether size 32 meets the 1,000 images/s target
that keeps data generation far from being the bottleneck of tiny-CLIP pretraining.
"""

import os

# Pin one core before numpy is imported: the thread pools size themselves at import time.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import time  # noqa: E402

import numpy as np  # noqa: E402

from adaring_jax.data.shapes import DOMAINS, ShapesSource  # noqa: E402

TARGET_PER_SECOND = 1000
BATCH, BATCHES, REPEATS = 256, 8, 3


def images_per_second(source: ShapesSource) -> float:
    """Best-of-`REPEATS` throughput rendering `BATCHES` consecutive batches of `BATCH`."""
    source.render_batch(np.arange(BATCH))  # warm-up
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for b in range(BATCHES):
            source.render_batch(np.arange(b * BATCH, (b + 1) * BATCH))
        best = min(best, time.perf_counter() - start)
    return BATCH * BATCHES / best


def main():
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "unpinned"
    print(f"one core (affinity {cores}), batches of {BATCH}")
    ok = True
    for size in (32, 64):
        for domain in DOMAINS:
            source = ShapesSource(domain=domain, size=BATCH * BATCHES, image_size=size)
            rate = images_per_second(source)
            print(f"{domain:>8}  {size:>3}px  {rate:8.0f} images/s")
            ok &= size != 32 or rate >= TARGET_PER_SECOND
    print(f"meets {TARGET_PER_SECOND} images/s at 32px: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
