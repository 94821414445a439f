"""Input pipeline: grain over random-access sources, sharded by process, deterministic by step.

Why grain over `tfds.data_source` rather than tf.data: few-shot training reads a few thousand
chosen indices, which needs random access, not a stream; grain maps and prefetches with
threads and needs no TensorFlow (1.4 GB), and every batch is a pure function of (seed, step),
so the data position saved in a checkpoint is just the step.

Training (CoOp's augmentation): random resized crop (scale 0.08-1, ratio 3/4-4/3, bicubic),
horizontal flip, CLIP normalization. The global batch of step s is slice s of epoch
s // steps_per_epoch's seeded permutation; process p takes its contiguous share, and each
example's augmentation RNG is keyed by (seed, step, position in the global batch): the data seen
does not depend on the number of processes. Evaluation: resize + center crop; the index list
is padded to whole global batches and padded (or unreadable) examples get mask 0.

A few-shot training set is read once per epoch for many epochs: the training loader keeps each
decoded example in memory the first time it is read (up to `DECODED_BUDGET` bytes; the rest is
decoded again each epoch), so a 20-epoch run decodes (or renders) each image once. Decoding is
deterministic, so the batches are the same either way. Threads: `num_threads=0` (the default)
takes min(4, the cores this process may use); more threads than cores only contend with XLA.
"""

from __future__ import annotations

import functools
import math
import os
import threading

import grain
import numpy as np
from PIL import Image

from adaring_jax.data import image_cache
from adaring_jax.models import preprocess


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator,
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> Image.Image:
    """torchvision's RandomResizedCrop: up to 10 tries at a random area/aspect, else center."""
    h, w = image.shape[:2]
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            break
    else:  # fall back to a central crop with the aspect clamped to `ratio`
        in_ratio = w / h
        if in_ratio < ratio[0]:
            cw, ch = w, int(round(w / ratio[0]))
        elif in_ratio > ratio[1]:
            ch, cw = h, int(round(h * ratio[1]))
        else:
            cw, ch = w, h
        top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(image[top:top + ch, left:left + cw])
    return crop.resize((size, size), Image.Resampling.BICUBIC)


def train_transform(image: np.ndarray, size: int, rng: np.random.Generator,
                    scale=(0.08, 1.0)) -> np.ndarray:
    crop = random_resized_crop(image, size, rng, scale)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return preprocess.normalize(np.asarray(crop))


def eval_transform(image: np.ndarray, size: int) -> np.ndarray:
    return preprocess.eval_transform(Image.fromarray(image), size)


DECODED_BUDGET = 1 << 30  # bytes of decoded training examples kept in memory per loader


def threads(num_threads: int) -> int:
    """`num_threads`, or for 0 min(4, the cores available to this process)."""
    if num_threads:
        return num_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cores or 1))


def _read_options(num_threads: int) -> grain.ReadOptions:
    n = threads(num_threads)
    return grain.ReadOptions(num_threads=n, prefetch_buffer_size=4 * n)


class _Decoded:
    """A source's examples, each read once and then kept (read-only) while within `budget`
    bytes; beyond it, read again on every access."""

    def __init__(self, source, budget: int | None = None):
        self.source, self.kept, self.lock = source, {}, threading.Lock()
        self.left = DECODED_BUDGET if budget is None else budget

    def __getitem__(self, index: int) -> dict:
        example = self.kept.get(index)
        if example is not None:
            return example
        example = self.source[index]
        size = sum(v.nbytes for v in example.values() if isinstance(v, np.ndarray))
        with self.lock:
            if index not in self.kept and size <= self.left:
                for v in example.values():
                    if isinstance(v, np.ndarray):
                        v.setflags(write=False)  # the transforms make new arrays
                self.kept[index] = example
                self.left -= size
        return example


class TrainLoader:
    """Augmented training batches of this process's share of each global batch."""

    def __init__(self, source, indices, global_batch: int, image_size: int, seed: int,
                 process_index: int = 0, process_count: int = 1, crop_scale=(0.08, 1.0),
                 num_threads: int = 0):
        if global_batch % process_count:
            raise ValueError(f"global batch {global_batch} is not divisible by "
                             f"{process_count} processes")
        self.indices = np.asarray(indices, np.int64)
        if len(self.indices) < global_batch:
            raise ValueError(f"{len(self.indices)} training examples < global batch "
                             f"{global_batch}; lower the batch size")
        self.source = _Decoded(source)  # each image decoded once, not once per epoch
        self.global_batch, self.image_size = global_batch, image_size
        self.seed, self.crop_scale, self.num_threads = seed, tuple(crop_scale), num_threads
        self.local_batch = global_batch // process_count
        self.offset = process_index * self.local_batch
        self.steps_per_epoch = len(self.indices) // global_batch  # the last partial batch drops

    @functools.lru_cache(maxsize=2)
    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.indices)

    def global_indices(self, step: int) -> np.ndarray:
        """Dataset indices of the whole global batch of `step` (all processes)."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        return self._permutation(epoch)[pos * self.global_batch:(pos + 1) * self.global_batch]

    def _example(self, flat: int) -> dict:
        step, j = divmod(flat, self.local_batch)
        slot = self.offset + j
        index = int(self.global_indices(step)[slot])
        example = self.source[index]
        rng = np.random.default_rng([self.seed, step, slot])
        return {"image": train_transform(example["image"], self.image_size, rng,
                                         self.crop_scale),
                "label": np.int32(example["label"]),
                "mask": np.float32(example.get("valid", True))}

    def batches(self, start_step: int, num_steps: int):
        """Iterator over steps [start_step, num_steps) of this process's batches."""
        ds = grain.MapDataset.range(start_step * self.local_batch, num_steps * self.local_batch)
        ds = ds.map(self._example).batch(self.local_batch, drop_remainder=True)
        return iter(ds.to_iter_dataset(_read_options(self.num_threads)))


def eval_batches(source, indices, global_batch: int, image_size: int, process_index: int = 0,
                 process_count: int = 1, num_threads: int = 0):
    """This process's share of evaluation batches over `indices`, padded with mask-0 entries
    so that every example is counted exactly once across processes."""
    if global_batch % process_count:
        raise ValueError(f"global batch {global_batch} is not divisible by {process_count}")
    # Rendered test sets come from the per-user image cache (rendered once per table).
    source, indices = image_cache.rendered(source, indices, process_count, threads(num_threads))
    local = global_batch // process_count
    num_batches = max(1, math.ceil(len(indices) / global_batch))
    padded = np.full(num_batches * global_batch, -1, np.int64)
    padded[:len(indices)] = indices
    mine = padded.reshape(num_batches, process_count, local)[:, process_index].reshape(-1)
    blank = np.zeros((image_size, image_size, 3), np.float32)

    def example(i: int) -> dict:
        if i < 0:
            return {"image": blank, "label": np.int32(0), "mask": np.float32(0)}
        ex = source[int(i)]
        return {"image": eval_transform(ex["image"], image_size), "label": np.int32(ex["label"]),
                "mask": np.float32(ex.get("valid", True))}

    ds = grain.MapDataset.source(mine.tolist()).map(example).batch(local)
    return iter(ds.to_iter_dataset(_read_options(num_threads)))
