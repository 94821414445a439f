r"""The embedded suite: nine more tasks of the shapes world, to go with the default one.

The 11 CoOp datasets differ in how far they are from CLIP's pretraining images and in what a
class is (object, texture, fine-grained species...). One embedded task cannot say in which
regime an adapter wins, so the suite varies the same two axes in the shapes world, each task a
dataset name (`dataset=shapes_mild`, ...) with base and novel classes (first half = base):

| task | classes | rendering | shift from pretraining |
|---|---|---|---|
| shapes_mild | 64 colour x shape | plain background, solid object, more noise | mild |
| shapes_medium | 64 | stripes behind a solid object | medium |
| shapes (default job) | 64 | stripes, outlined translucent object, strong noise | strong |
| shapes_colour | 8 colours ("red object"), any shape | as `shapes` | strong, colour only |
| shapes_shape | 8 shapes ("star"), any colour | as `shapes` | strong, shape only |
| shapes_lookalike | 16: red/orange/cyan/blue x circle/ring/star/cross | as medium, wide colour jitter | fine-grained pairs |
| shapes_small | 64 | as medium, objects at a third of the size | size |
| shapes_clutter | 64 | plain, 3 grey distractor shapes, a bar across the object | clutter, occlusion |
| shapes_texture | 64 | textured background and object | texture |
| shapes_noise | 64 | plain, pixel noise std 45 | noise |

The 64-class tasks share `shapes.CLASSNAMES` (and its checkerboard order, so base and novel
share every colour and shape): they are also the shifted renderings of one class set, which the
domain-generalization protocol trains on `shapes_mild` and tests on. Example i of (seed, task,
split) has label i % classes and is a pure function of those four values, as in `shapes`.

    python -m adaring_jax.data.shapes_suite docs/shapes_suite.png   # base and novel rows per task
"""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np

from adaring_jax.data import shapes

_C = {name: i for i, name in enumerate(shapes.COLOURS)}
_S = {name: i for i, name in enumerate(shapes.SHAPES)}


@dataclasses.dataclass(frozen=True)
class Rendering:
    """How a task draws its images (0..255 levels; sizes as fractions of the image side)."""
    background: str = "plain"  # plain (pretraining's) | stripes (the target's) | texture
    outline: bool = False  # the target's outline over a faint fill, else a solid object
    noise_std: float = shapes.PRETRAIN_NOISE_STD
    radius: tuple[float, float] = shapes.RADIUS_RANGE
    colour_jitter: float = shapes.COLOUR_JITTER
    distractors: int = 0  # grey shapes of random kind behind the object
    occluder: bool = False  # a dark bar across the object
    textured_object: bool = False  # the object's colour modulated by a checker pattern


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    shift: str  # a word for the table: mild, medium, strong, ...
    classes: tuple[tuple[int | None, int | None], ...]  # (colour, shape); None: drawn at random
    rendering: Rendering

    @property
    def classnames(self) -> list[str]:
        colours = list(shapes.COLOURS)
        return [f"{colours[c]} object" if s is None else shapes.SHAPES[s] if c is None
                else f"{colours[c]} {shapes.SHAPES[s]}" for c, s in self.classes]


_ALL = tuple(zip(shapes.CLASS_COLOUR.tolist(), shapes.CLASS_SHAPE.tolist()))
_TARGET = Rendering("stripes", outline=True, noise_std=shapes.TARGET_NOISE_STD)
_MEDIUM = Rendering("stripes", noise_std=8.0)
# Base and novel halves interleave: each half has warm and cold colours, round and pointed shapes.
_COLOURS = tuple((_C[c], None) for c in ("red", "green", "blue", "white",
                                         "orange", "yellow", "cyan", "magenta"))
_SHAPES = tuple((None, _S[s]) for s in ("circle", "triangle", "star", "heart",
                                        "square", "cross", "ring", "crescent"))
# Look-alike pairs (red/orange, cyan/blue; circle/ring, star/cross) in checkerboard order.
_PAIR_COLOURS, _PAIR_SHAPES = ("red", "orange", "cyan", "blue"), ("circle", "ring", "star", "cross")
_PAIRS = tuple((_C[_PAIR_COLOURS[i]], _S[_PAIR_SHAPES[j]]) for _, i, j in sorted(
    ((i + j) % 2, i, j) for i in range(4) for j in range(4)))

TASKS = {t.name: t for t in (
    Task("shapes_mild", "mild", _ALL, Rendering(noise_std=8.0)),
    Task("shapes_medium", "medium", _ALL, _MEDIUM),
    Task("shapes_colour", "strong, colour only", _COLOURS, _TARGET),
    Task("shapes_shape", "strong, shape only", _SHAPES, _TARGET),
    Task("shapes_lookalike", "fine-grained pairs", _PAIRS,
         dataclasses.replace(_MEDIUM, colour_jitter=28.0)),
    Task("shapes_small", "size", _ALL, dataclasses.replace(_MEDIUM, radius=(0.1, 0.16))),
    Task("shapes_clutter", "clutter, occlusion", _ALL,
         Rendering(noise_std=8.0, distractors=3, occluder=True)),
    Task("shapes_texture", "texture", _ALL,
         Rendering("texture", noise_std=8.0, textured_object=True)),
    Task("shapes_noise", "noise", _ALL, Rendering(noise_std=45.0)),
)}
# The suite in table order: the default job's task takes its place by shift strength.
SUITE = ("shapes_mild", "shapes_medium", "shapes", "shapes_colour", "shapes_shape",
         "shapes_lookalike", "shapes_small", "shapes_clutter", "shapes_texture", "shapes_noise")
_SPLIT_ID = {s: i for i, s in enumerate(shapes.SPLITS)}
_UNIFORMS = 24  # per example, see `render`


def _col(values, n):
    return np.asarray(values, np.float32).reshape(n, 1, 1)


def _frame(pix, cx, cy, angle, radius, n):
    """Pixel coordinates in objects' unit frames: (x, y), each (B, S, S)."""
    dx, dy = pix[None, None, :] - _col(cx, n), pix[None, :, None] - _col(cy, n)
    cos = _col([math.cos(a) for a in angle], n)
    sin = _col([math.sin(a) for a in angle], n)
    scale = _col(radius, n)
    return (cos * dx + sin * dy) / scale, (cos * dy - sin * dx) / scale


def _coverage(shape_ids, x, y, radius, size):
    """Anti-aliased inside indicator (B, S, S) of shape `shape_ids[b]` in each frame."""
    sdf = np.empty(x.shape, np.float32)
    for k, name in enumerate(shapes.SHAPES):
        m = shape_ids == k
        if m.any():
            sdf[m] = shapes.SDF[name](x[m], y[m])
    sdf *= _col(np.asarray(radius) * size, len(shape_ids))
    return sdf, np.clip(0.5 - sdf, 0, 1)


def _waves(u, pix, n, period_lo, period_hi):
    """A soft-edged bar pattern in [-1, 1] (B, S, S): orientation u[:, 0], period u[:, 1]
    (between the bounds, fractions of the side), phase u[:, 2]."""
    phi = math.pi * u[:, 0]
    period = _col(period_lo + (period_hi - period_lo) * u[:, 1], n)
    t = (_col([math.cos(a) for a in phi], n) * pix[None, None, :]
         + _col([math.sin(a) for a in phi], n) * pix[None, :, None]) / period + _col(u[:, 2], n)
    return np.clip(4 * np.abs(2 * (t - np.floor(t)) - 1) - 2, -1, 1)


def render(task: Task, indices, *, seed=0, split="train", image_size=32) -> np.ndarray:
    """uint8 (B, S, S, 3) images of examples `indices` of `task`, vectorised over the batch;
    like `shapes.render`, an image's bytes do not depend on the batch it is rendered in."""
    r, n, s = task.rendering, len(indices), image_size
    task_id = list(TASKS).index(task.name)
    draws = [np.random.default_rng([seed, 100 + task_id, _SPLIT_ID[split], int(i)])
             for i in indices]
    u = np.array([g.random(_UNIFORMS) for g in draws]).reshape(n, _UNIFORMS)
    noise = (np.stack([g.standard_normal((s, s, 3), np.float32) for g in draws]) if n
             else np.zeros((0, s, s, 3), np.float32))
    labels = np.asarray(indices, np.int64) % len(task.classes)
    colour_id = np.array([c for c, _ in task.classes])[labels]
    shape_id = np.array([sh for _, sh in task.classes])[labels]
    # A class that names only a colour (shape) shows any shape (colour): u[11] (u[12]) picks.
    colour_id = np.where(colour_id == None, (u[:, 12] * len(shapes.COLOURS)).astype(int),  # noqa: E711
                         colour_id).astype(np.int64)
    shape_id = np.where(shape_id == None, (u[:, 11] * len(shapes.SHAPES)).astype(int),  # noqa: E711
                        shape_id).astype(np.int64)
    pix = (np.arange(s, dtype=np.float32) + 0.5) / s

    # Background: u[7] grey level (and u[8:11] a tint, or the pattern's parameters).
    if r.background == "plain":  # pretraining's dark or light, slightly tinted grey
        level = np.where(u[:, 7] < 0.5, 20 + 120 * u[:, 7], 135 + 100 * (u[:, 7] - 0.5))
        image = np.broadcast_to((level[:, None] + 24 * (u[:, 8:11] - 0.5))[:, None, None, :],
                                (n, s, s, 3)).astype(np.float32)
    else:
        if r.background == "stripes":  # the target domain's bars
            pattern = shapes.TARGET_STRIPE_CONTRAST * _waves(u[:, 8:11], pix, n,
                                                             *shapes.TARGET_STRIPE_PERIOD)
        else:  # texture: two crossing fine gratings, a woven look
            pattern = 30 * (_waves(u[:, 8:11], pix, n, 0.05, 0.1)
                            * _waves(u[:, 13:16], pix, n, 0.05, 0.1))
        image = np.repeat((_col(105 + 45 * u[:, 7], n) + pattern)[..., None], 3, -1)

    # Distractors: small grey shapes, u[16 + 2k] position/kind, behind the object.
    for k in range(r.distractors):
        a, b = u[:, 16 + 2 * k], u[:, 17 + 2 * k]
        radius = np.full(n, 0.1)
        x, y = _frame(pix, 0.1 + 0.8 * a, 0.1 + 0.8 * b, 2 * math.pi * a, radius, n)
        _, cover = _coverage((b * 997 % 1 * len(shapes.SHAPES)).astype(int), x, y, radius, s)
        grey = _col(70 + 130 * (a * 613 % 1), n)[..., None]
        image = image * (1 - cover[..., None]) + grey * cover[..., None]

    # The object: u[0] radius, u[1:3] centre, u[3] rotation, u[4:7] colour jitter.
    radius = r.radius[0] + (r.radius[1] - r.radius[0]) * u[:, 0]
    cx, cy = (0.9 * radius + (1 - 1.8 * radius) * u[:, k] for k in (1, 2))
    angle = math.radians(shapes.MAX_ROTATION) * (2 * u[:, 3] - 1)
    x, y = _frame(pix, cx, cy, angle, radius, n)
    sdf, cover = _coverage(shape_id, x, y, radius, s)
    colour = shapes.RGB[colour_id] + r.colour_jitter * (2 * u[:, 4:7] - 1)
    colour = np.broadcast_to(colour[:, None, None, :], (n, s, s, 3)).astype(np.float32)
    if r.textured_object:  # checker cells of 1/8 the object: light and dark squares
        checker = ((np.floor(4 * x) + np.floor(4 * y)) % 2)[..., None]
        colour = colour * (0.65 + 0.35 * checker)
    if r.outline:
        width = _col(shapes.TARGET_OUTLINE_WIDTH * radius * s, n)
        stroke = np.clip(0.5 - (np.abs(sdf + width / 2) - width / 2), 0, 1)
        cover = np.maximum(stroke, shapes.TARGET_FILL_ALPHA * cover)
    image = image * (1 - cover[..., None]) + colour * cover[..., None]

    if r.occluder:  # a dark bar through the object's centre, u[20] angle, u[21] width
        phi = math.pi * u[:, 20]
        across = (_col([math.cos(a) for a in phi], n) * (pix[None, None, :] - _col(cx, n))
                  + _col([math.sin(a) for a in phi], n) * (pix[None, :, None] - _col(cy, n)))
        half = _col((0.15 + 0.15 * u[:, 21]) * radius, n)
        bar = np.clip(0.5 - (np.abs(across) - half) * s, 0, 1)[..., None]
        image = image * (1 - bar) + _col(30 + 30 * u[:, 22], n)[..., None] * bar
    image = image + r.noise_std * noise
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class SuiteSource(shapes.RenderedSource):
    """`size` examples of one split of a suite task; example i has label i % classes."""

    def __init__(self, task: str, split="train", size=6400, image_size=32, seed=0):
        if task not in TASKS:
            raise ValueError(f"unknown suite task {task!r}; valid: {', '.join(TASKS)}")
        if split not in shapes.SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(shapes.SPLITS)}")
        self._sizes(size, image_size, seed)
        self.task, self.split = TASKS[task], split
        self.classnames = self.task.classnames

    def describe(self) -> str:
        """What the examples are (with an index, one image), for content-keyed caches."""
        return f"suite|{self.task!r}|{self.split}|{self.seed}|{self.image_size}"

    def _render(self, indices) -> np.ndarray:
        return render(self.task, indices, seed=self.seed, split=self.split,
                      image_size=self.image_size)


def _source(name, split, size, image_size, seed):
    if name == "shapes":
        return shapes.ShapesSource(split, "target", size=size, image_size=image_size, seed=seed)
    return SuiteSource(name, split, size=size, image_size=image_size, seed=seed)


def grid_rows(name, per_row=16, image_size=32, seed=0) -> np.ndarray:
    """uint8 picture of a task: its first `per_row` base-class test examples above its first
    `per_row` novel-class ones, with 1-pixel white gaps."""
    source = _source(name, "test", 64 * per_row, image_size, seed)
    labels, half = source.labels(), len(source.classnames) // 2
    rows = []
    for keep in (labels < half, labels >= half):
        images = source.render_batch(np.flatnonzero(keep)[:per_row])
        images = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=255)
        rows.append(np.concatenate(list(images), axis=1))
    return np.concatenate(rows)


def save_grid(path, image_size=32, scale=2, per_row=16, seed=0):
    """A PNG of the suite in `SUITE` order, two rows per task: base classes, novel classes."""
    from PIL import Image

    gap = np.full((4, per_row * (image_size + 2), 3), 255, np.uint8)
    picture = np.concatenate([part for name in SUITE
                              for part in (grid_rows(name, per_row, image_size, seed), gap)])
    Image.fromarray(picture.repeat(scale, 0).repeat(scale, 1)).quantize(256).save(path)  # a palette: a third of the bytes


if __name__ == "__main__":
    save_grid(sys.argv[1] if len(sys.argv) > 1 else "shapes_suite.png")
