r"""The `shapes` world: a small procedural image distribution with captions, in two domains.

The project can download neither datasets nor pretrained CLIP weights, so it ships this world to
pretrain a tiny CLIP on and to adapt it few-shot. Every image shows one coloured object; the class
is the pair (colour, shape), 8 colours x 8 shapes = 64 classes named "{colour} {shape}"
("red star"). `CLASSNAMES` puts the 32 classes with (colour index + shape index) even first, then
the other 32, so the CoOp base/novel split (first half = base) gives base and novel classes that
share every colour and every shape; `CLASS_COLOUR` / `CLASS_SHAPE` map a label to its parts.

Nuisances drawn per example: object size, position (mostly inside the image), rotation (0..360
degrees), a small colour jitter, the background and pixel noise. The two rendering domains share
the classes but differ in style:

- "pretrain": a flat, low-saturation light or dark background, a solid filled object, mild noise.
- "target": a mid-grey background with stripes of random orientation and period, the object drawn
  as a solid outline over a faint translucent fill, and stronger noise.

A CLIP pretrained on captioned "pretrain" images should thus recognise "target" images zero-shot
above chance but clearly worse than in-domain: the gap few-shot adaptation is meant to close. The
`TARGET_*` constants set the size of that shift.

Example i of (seed, domain, split) is a pure function of those four values: all its randomness
comes from `np.random.default_rng([seed, domain_id, split_id, i, stream])`, so any process renders
any index, byte-identically. Objects are rasterised from signed distance fields (SDFs): each shape
is an SDF in its own unit frame, and a pixel's coverage is approximated by
clip(0.5 - distance_in_pixels, 0, 1), an anti-aliased edge one pixel wide at any image size.

    python -m adaring_jax.data.shapes /tmp/shapes_grid.png   # both domains, all 64 classes
"""

from __future__ import annotations

import math
import operator
import re
import sys

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "heart", "crescent")
COLOURS = {  # name -> RGB; saturated hues (and white) that stay nameable after jitter
    "red": (225, 30, 30),
    "orange": (250, 135, 15),
    "yellow": (240, 220, 30),
    "green": (40, 170, 50),
    "cyan": (30, 205, 220),
    "blue": (35, 65, 225),
    "magenta": (215, 40, 200),
    "white": (245, 245, 245),
}
# (colour, shape) index pairs in label order: the "even" checkerboard half first, each half
# colour-major.
_CLASSES = sorted(((c, s) for c in range(len(COLOURS)) for s in range(len(SHAPES))),
                  key=lambda cs: ((cs[0] + cs[1]) % 2, cs))
CLASS_COLOUR = np.array([c for c, _ in _CLASSES])  # label -> colour index
CLASS_SHAPE = np.array([s for _, s in _CLASSES])  # label -> shape index
CLASSNAMES = [f"{list(COLOURS)[c]} {SHAPES[s]}" for c, s in _CLASSES]
NUM_CLASSES = len(CLASSNAMES)
DOMAINS = ("pretrain", "target")
SPLITS = ("train", "validation", "test")
TEMPLATE = "a photo of a {}."

RADIUS_RANGE = (0.22, 0.38)  # object radius as a fraction of the image side
MAX_ROTATION = 180.0  # objects turn by a uniform angle in [-MAX_ROTATION, MAX_ROTATION] degrees
COLOUR_JITTER = 12.0  # max per-channel offset of the object colour, in 0..255 levels
PRETRAIN_NOISE_STD = 3.0  # Gaussian pixel noise, 0..255 levels
TARGET_NOISE_STD = 14.0
TARGET_STRIPE_CONTRAST = 40.0  # stripe amplitude around the grey level, 0..255 levels
TARGET_STRIPE_PERIOD = (0.12, 0.3)  # stripe period as a fraction of the image side
TARGET_OUTLINE_WIDTH = 0.22  # outline width as a fraction of the object radius
TARGET_FILL_ALPHA = 0.3  # opacity of the fill inside the outline

RGB = np.array(list(COLOURS.values()), np.float32)
_NUM_PARAMS = 12  # uniforms drawn per example (see `_draw`)


# --- Signed distance fields in the object's unit frame (negative inside, radius about 1) -------

def _length(x, y):
    return np.sqrt(x * x + y * y)


def _box(x, y, hx, hy):
    """Exact SDF of the axis-aligned box |x| <= hx, |y| <= hy."""
    qx, qy = np.abs(x) - hx, np.abs(y) - hy
    return _length(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def _polygon(x, y, vertices):
    """Exact SDF of a simple polygon: distance to the nearest edge, negated inside."""
    dist = np.full(x.shape, np.inf, x.dtype)
    inside = np.zeros(x.shape, bool)
    for (ax, ay), (bx, by) in zip(vertices, vertices[1:] + vertices[:1]):
        ex, ey, wx, wy = bx - ax, by - ay, x - ax, y - ay
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)  # nearest point on the edge
        dist = np.minimum(dist, _length(wx - t * ex, wy - t * ey))
        # Even-odd rule: a ray towards +x crosses this edge if the edge straddles the point's row
        # and meets that row to the right of the point.
        if ey != 0:
            inside ^= ((ay > y) != (by > y)) & (x < ax + (y - ay) * (ex / ey))
    return np.where(inside, -dist, dist)


def _star(points, outer, inner=None):
    """Vertices (python floats) of a regular polygon (inner=None) or a star with `points` tips."""
    if inner is None:
        return [(outer * math.cos(a), outer * math.sin(a))
                for a in (2 * math.pi * k / points - math.pi / 2 for k in range(points))]
    return [(r * math.cos(a), r * math.sin(a)) for k in range(2 * points)
            for r, a in [(outer if k % 2 == 0 else inner, math.pi * k / points - math.pi / 2)]]


_TRIANGLE = _star(3, 1.1)
_STAR = _star(5, 1.05, 0.45)
_HEART_BODY = [(0.0, 0.83), (0.75, 0.08), (0.0, -0.67), (-0.75, 0.08)]  # a square on its corner
SDF = {
    "circle": lambda x, y: _length(x, y) - 0.9,
    "square": lambda x, y: _box(x, y, 0.75, 0.75),
    "triangle": lambda x, y: _polygon(x, y - 0.2, _TRIANGLE),  # shifted so the box is centred
    "star": lambda x, y: _polygon(x, y - 0.1, _STAR),
    "cross": lambda x, y: np.minimum(_box(x, y, 0.95, 0.3), _box(x, y, 0.3, 0.95)),
    "ring": lambda x, y: np.abs(_length(x, y) - 0.68) - 0.27,
    # A heart is the square on its corner plus two discs on its upper edges' midpoints (union =
    # min). y points down the image, so "upper" edges have negative y before rotation.
    "heart": lambda x, y: np.minimum(
        _polygon(x, y, _HEART_BODY),
        np.minimum(_length(x - 0.375, y + 0.295), _length(x + 0.375, y + 0.295)) - 0.53),
    # A disc minus an offset disc (difference = max(d1, -d2)).
    "crescent": lambda x, y: np.maximum(_length(x + 0.15, y) - 0.95, 0.75 - _length(x - 0.3, y)),
}
assert tuple(SDF) == SHAPES


# --- Rendering ----------------------------------------------------------------------------------

def _between(lo, hi, u):
    return lo + (hi - lo) * u


def _check(value, valid, what):
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")


def _rng(seed, domain, split, index, stream):
    """The generator of one example's `stream` (0: image, 1: caption)."""
    return np.random.default_rng([seed, DOMAINS.index(domain), SPLITS.index(split), index, stream])


def _draw(seed, domain, split, index, image_size):
    """One example's randomness: `_NUM_PARAMS` uniforms and a unit Gaussian noise field."""
    rng = _rng(seed, domain, split, index, 0)
    return rng.random(_NUM_PARAMS), rng.standard_normal((image_size, image_size, 3), np.float32)


def render(indices, *, seed=0, domain="pretrain", split="train", image_size=32):
    """uint8 (B, S, S, 3) images of examples `indices` (non-negative), vectorised over the batch.

    Only the random draws loop over examples; everything else is elementwise numpy over the batch
    (no matmuls or reductions across pixels, trigonometry on scalars via `math`), so an image's
    bytes do not depend on which batch it is rendered in.
    """
    _check(domain, DOMAINS, "domain")
    _check(split, SPLITS, "split")
    idx = np.asarray(indices, np.int64).reshape(-1)
    draws = [_draw(seed, domain, split, int(i), image_size) for i in idx]
    u = np.array([d[0] for d in draws]).reshape(-1, _NUM_PARAMS)
    noise = np.stack([d[1] for d in draws]) if draws else np.zeros((0, image_size, image_size, 3))
    n, s, f32 = len(idx), image_size, np.float32

    def col(values):  # per-example scalars -> (B, 1, 1) float32 for broadcasting over pixels
        return np.asarray(values, f32).reshape(n, 1, 1)

    labels = idx % NUM_CLASSES
    # Geometry: u[0] radius, u[1:3] centre (at least 0.9 radius from the border), u[3] rotation.
    radius = _between(*RADIUS_RANGE, u[:, 0])
    cx, cy = (0.9 * radius + (1 - 1.8 * radius) * u[:, k] for k in (1, 2))
    angle = math.radians(MAX_ROTATION) * (2 * u[:, 3] - 1)
    pix = (np.arange(s, dtype=f32) + 0.5) / s  # pixel centres in [0, 1]
    dx, dy = pix[None, None, :] - col(cx), pix[None, :, None] - col(cy)
    cos, sin = col([math.cos(a) for a in angle]), col([math.sin(a) for a in angle])
    scale = col(radius)  # object frame: rotate by -angle, divide by the radius
    x, y = (cos * dx + sin * dy) / scale, (cos * dy - sin * dx) / scale
    sdf = np.empty((n, s, s), f32)
    for k, name in enumerate(SHAPES):
        m = CLASS_SHAPE[labels] == k
        if m.any():
            sdf[m] = SDF[name](x[m], y[m])
    sdf *= col(radius * s)  # unit-frame distance -> pixels
    coverage = np.clip(0.5 - sdf, 0, 1)  # anti-aliased inside indicator

    # Colour: class colour plus u[4:7] jitter.
    colour = RGB[CLASS_COLOUR[labels]] + COLOUR_JITTER * (2 * u[:, 4:7] - 1)
    if domain == "pretrain":
        # u[7] < 0.5: dark grey level 20..80, else light 135..185; u[8:11] a small tint.
        level = np.where(u[:, 7] < 0.5, 20 + 120 * u[:, 7], 135 + 100 * (u[:, 7] - 0.5))
        bg = (level[:, None] + 24 * (u[:, 8:11] - 0.5))[:, None, None, :].astype(f32)
        alpha, noise_std = coverage, PRETRAIN_NOISE_STD
    else:
        # u[7] grey level 105..150; stripes at orientation u[8], period u[9], phase u[10].
        phi, period = math.pi * u[:, 8], col(_between(*TARGET_STRIPE_PERIOD, u[:, 9]))
        # t = (position along the stripes' normal) / period + phase, in cycles.
        t = (col([math.cos(a) for a in phi]) * pix[None, None, :]
             + col([math.sin(a) for a in phi]) * pix[None, :, None]) / period + col(u[:, 10])
        tri = np.abs(2 * (t - np.floor(t)) - 1)  # triangle wave in [0, 1], one cycle per period
        stripes = np.clip(4 * tri - 2, -1, 1)  # sharpened into soft-edged bars
        bg = (col(105 + 45 * u[:, 7]) + TARGET_STRIPE_CONTRAST * stripes)[..., None]
        width = col(TARGET_OUTLINE_WIDTH * radius * s)
        outline = np.clip(0.5 - (np.abs(sdf + width / 2) - width / 2), 0, 1)  # inner stroke
        alpha, noise_std = np.maximum(outline, TARGET_FILL_ALPHA * coverage), TARGET_NOISE_STD
    alpha = alpha[..., None]
    image = bg * (1 - alpha) + colour[:, None, None, :].astype(f32) * alpha + noise_std * noise
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# --- Captions -------------------------------------------------------------------------------------

_CAPTIONS = {  # kind -> templates; a caption picks a kind uniformly, then a template
    "full": ("a photo of a {colour} {shape}.", "a {colour} {shape}.",
             "a picture of a {colour} {shape}.", "a {colour} {shape} on a {background} background.",
             "there is a {colour} {shape} in the image.", "a {shape} that is {colour}."),
    "shape": ("a {shape}.", "a photo of a {shape}.", "a {shape} shape.",
              "there is a {shape} in the image."),
    "colour": ("something {colour}.", "a {colour} object.", "a photo of something {colour}.",
               "the colour {colour}."),
}
_BACKGROUND = {"pretrain": "plain", "target": "striped"}


def _fill(template, colour, shape, background):
    text = template.format(colour=colour, shape=shape, background=background)
    return re.sub(r"\ba (?=[aeiou])", "an ", text)  # "a orange" -> "an orange"


def words(text):
    """Lower-case words and punctuation marks of `text`, the unit `caption_vocabulary` lists."""
    return re.findall(r"[a-z]+|[^\sa-z]", text.lower())


def caption(index, *, seed=0, domain="pretrain", split="train"):
    """The caption of example `index`: a random template naming its colour, shape, or both."""
    rng = _rng(seed, domain, split, index, 1)
    templates = list(_CAPTIONS.values())[rng.integers(len(_CAPTIONS))]
    label = index % NUM_CLASSES
    colour, shape = list(COLOURS)[CLASS_COLOUR[label]], SHAPES[CLASS_SHAPE[label]]
    return _fill(templates[rng.integers(len(templates))], colour, shape, _BACKGROUND[domain])


def caption_vocabulary():
    """Sorted words (see `words`) of every possible caption, class name and prompt."""
    texts = [TEMPLATE.format(c) for c in CLASSNAMES] + list(CLASSNAMES)
    texts += [_fill(t, c, s, b) for templates in _CAPTIONS.values() for t in templates
              for c in COLOURS for s in SHAPES for b in _BACKGROUND.values()]
    return sorted({w for t in texts for w in words(t)})


# --- The source -----------------------------------------------------------------------------------

class RenderedSource:
    """What every rendered source shares: `size` examples of `classnames`, example i of label
    i % classes; a subclass sets its fields and provides `_render(indices)`."""

    template = TEMPLATE

    def _sizes(self, size, image_size, seed) -> None:
        if size < 0 or image_size < 8:
            raise ValueError(f"need size >= 0 and image_size >= 8, got {size}, {image_size}")
        self.size, self.image_size, self.seed = int(size), int(image_size), int(seed)

    def __len__(self) -> int:
        return self.size

    def _index(self, i) -> int:
        i = operator.index(i)
        if not -self.size <= i < self.size:
            raise IndexError(f"index {i} out of range for {self.size} examples")
        return i % self.size

    def labels(self) -> np.ndarray:
        return np.arange(self.size, dtype=np.int64) % len(self.classnames)

    def render_batch(self, indices) -> np.ndarray:
        """uint8 (B, S, S, 3) images, byte-identical to stacking `self[i]["image"]`."""
        return self._render([self._index(i) for i in np.asarray(indices).reshape(-1)])

    def __getitem__(self, i) -> dict:
        i = self._index(i)
        return {"image": self.render_batch([i])[0], "label": i % len(self.classnames)}


class ShapesSource(RenderedSource):
    """`size` examples of one (split, domain) of the shapes world; example i has label i % 64."""

    def __init__(self, split="train", domain="pretrain", size=6400, image_size=32, seed=0):
        _check(split, SPLITS, "split")
        _check(domain, DOMAINS, "domain")
        self._sizes(size, image_size, seed)
        self.split, self.domain = split, domain
        self.classnames = list(CLASSNAMES)

    def describe(self) -> str:
        """What the examples are (with an index, one image), for content-keyed caches."""
        return f"shapes|{self.domain}|{self.split}|{self.seed}|{self.image_size}"

    def caption(self, i) -> str:
        return caption(self._index(i), seed=self.seed, domain=self.domain, split=self.split)

    def _render(self, indices) -> np.ndarray:
        return render(indices, seed=self.seed, domain=self.domain, split=self.split,
                      image_size=self.image_size)

    def __getitem__(self, i) -> dict:
        return {**super().__getitem__(i), "caption": self.caption(i)}


def grid(source, n_per_row=8, rows=4, start=0) -> np.ndarray:
    """uint8 picture tiling examples start.. of `source`, row-major, with 1-pixel white gaps."""
    images = source.render_batch(np.arange(start, start + n_per_row * rows))
    images = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=255)
    h, w = images.shape[1:3]
    return images.reshape(rows, n_per_row, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(
        rows * h, n_per_row * w, 3)


def save_grid(path, image_size=32, scale=3, seed=0):
    """Write a PNG of all 64 classes in both domains: pretrain on top, target below.

    In each half, row = colour and column = shape (the first 64 examples, colour-major).
    """
    from PIL import Image

    halves = [grid(ShapesSource(domain=d, size=64, image_size=image_size, seed=seed), 8, 8)
              for d in DOMAINS]
    gap = np.full((4, halves[0].shape[1], 3), 255, np.uint8)
    picture = np.concatenate([halves[0], gap, halves[1]])
    Image.fromarray(picture.repeat(scale, 0).repeat(scale, 1)).save(path)


if __name__ == "__main__":
    save_grid(sys.argv[1] if len(sys.argv) > 1 else "shapes_grid.png")
