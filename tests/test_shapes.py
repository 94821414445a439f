"""The procedural shapes world: determinism, random access, labels, captions, class signal."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from adaring_jax.data import shapes
from adaring_jax.data.shapes import CLASSNAMES, COLOURS, DOMAINS, SHAPES, ShapesSource
from adaring_jax.data.source import Source


def test_classes():
    assert len(SHAPES) >= 8 and len(COLOURS) >= 8 and len(CLASSNAMES) == len(SHAPES) * len(COLOURS)
    assert CLASSNAMES[0] == f"{list(COLOURS)[0]} {SHAPES[0]}"
    assert CLASSNAMES[1] == f"{list(COLOURS)[0]} {SHAPES[2]}"  # (colour + shape) even first
    for label, name in enumerate(CLASSNAMES):
        colour, shape = list(COLOURS)[shapes.CLASS_COLOUR[label]], SHAPES[shapes.CLASS_SHAPE[label]]
        assert name == f"{colour} {shape}"
    # The CoOp base/novel split (first half base) shares every colour and every shape.
    half = len(CLASSNAMES) // 2
    for part in (slice(0, half), slice(half, None)):
        assert set(shapes.CLASS_COLOUR[part]) == set(range(len(COLOURS)))
        assert set(shapes.CLASS_SHAPE[part]) == set(range(len(SHAPES)))
    assert len(set(CLASSNAMES)) == len(CLASSNAMES)
    assert all(len(rgb) == 3 and all(0 <= v <= 255 for v in rgb) for rgb in COLOURS.values())
    assert DOMAINS == ("pretrain", "target")


def test_protocol_and_metadata():
    source = ShapesSource()
    assert isinstance(source, Source)
    assert len(source) == 6400 and source.classnames == CLASSNAMES
    assert source.template == "a photo of a {}."


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("image_size", [32, 64, 224])
def test_example_shapes_and_ranges(domain, image_size):
    source = ShapesSource(domain=domain, size=128, image_size=image_size)
    batch = source.render_batch([0, 5, 127] if image_size == 224 else range(16))
    assert batch.dtype == np.uint8 and batch.shape[1:] == (image_size, image_size, 3)
    assert batch.std() > 10  # real images, not a flat fill
    example = source[3]
    assert example["image"].shape == (image_size, image_size, 3)
    assert example["image"].dtype == np.uint8
    assert type(example["label"]) is int and example["label"] == 3
    assert isinstance(example["caption"], str) and example["caption"]


@pytest.mark.parametrize("domain", DOMAINS)
def test_deterministic_and_random_access(domain):
    a = ShapesSource(domain=domain, size=256, seed=3)
    b = ShapesSource(domain=domain, size=256, seed=3)
    indices = [200, 7, 7, 0, 255, 64]
    batch = a.render_batch(indices)
    assert np.array_equal(batch, b.render_batch(indices))
    # The same bytes whatever the batch an image is rendered in, and through __getitem__.
    assert np.array_equal(batch, np.stack([b[i]["image"] for i in indices]))
    assert np.array_equal(a.render_batch(range(256))[indices], batch)
    assert np.array_equal(a[-1]["image"], a[255]["image"])
    assert [a.caption(i) for i in indices] == [b[i]["caption"] for i in indices]


def test_same_bytes_in_another_process():
    """Any process renders the same bytes for an index (no hidden global state)."""
    code = ("import hashlib; from adaring_jax.data.shapes import ShapesSource; "
            "print(hashlib.sha256(ShapesSource(domain='target', seed=5)"
            ".render_batch([9, 4000]).tobytes()).hexdigest())")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": root}).stdout.strip()
    expected = ShapesSource(domain="target", seed=5).render_batch([9, 4000]).tobytes()
    assert out == hashlib.sha256(expected).hexdigest()


def _distinct(x, y):
    """Fraction of images that differ."""
    return np.mean([not np.array_equal(u, v) for u, v in zip(x, y)])


def test_seeds_splits_and_domains_differ():
    def batch(**kw):
        return ShapesSource(size=64, **kw).render_batch(range(64))

    base = batch()
    assert _distinct(base, batch(seed=1)) == 1
    assert _distinct(base, batch(split="validation")) == 1
    assert _distinct(batch(split="validation"), batch(split="test")) == 1
    target = batch(domain="target")
    assert _distinct(base, target) == 1
    # Same example in the two domains: the target domain is noisier and striped.
    assert np.abs(np.diff(target.astype(int), axis=2)).mean() > 2 * np.abs(
        np.diff(base.astype(int), axis=2)).mean()


def test_labels_balanced_and_consistent():
    source = ShapesSource(size=640)
    labels = source.labels()
    assert labels.dtype == np.int64 and labels.shape == (640,)
    assert np.array_equal(np.bincount(labels, minlength=64), np.full(64, 10))
    assert all(labels[i] == source[i]["label"] for i in (0, 1, 63, 64, 333, 639))


def test_captions():
    source = ShapesSource(size=300)
    captions = [source.caption(i) for i in range(300)]
    assert captions == [ShapesSource(size=300).caption(i) for i in range(300)]
    assert len(set(captions)) > 100
    vocab = set(shapes.caption_vocabulary())
    assert shapes.caption_vocabulary() == sorted(vocab)
    kinds = {"full": 0, "shape": 0, "colour": 0}
    for i, text in enumerate(captions):
        words = set(shapes.words(text))
        assert words <= vocab, text
        colour, shape = CLASSNAMES[source.labels()[i]].split()
        has_colour, has_shape = colour in words, shape in words
        assert has_colour or has_shape, text
        assert not words & (set(COLOURS) | set(SHAPES)) - {colour, shape}, text  # nothing wrong
        kinds["full" if has_colour and has_shape else "colour" if has_colour else "shape"] += 1
    assert all(n > 60 for n in kinds.values()), kinds  # about a third each
    assert "an orange" in " ".join(captions) and "a orange" not in " ".join(captions)
    for prompt in [source.template.format(c) for c in CLASSNAMES] + CLASSNAMES:
        assert set(shapes.words(prompt)) <= vocab, prompt


def test_errors():
    with pytest.raises(ValueError, match="train, validation, test"):
        ShapesSource(split="val")
    with pytest.raises(ValueError, match="pretrain, target"):
        ShapesSource(domain="photo")
    source = ShapesSource(size=10)
    for bad in (10, -11):
        with pytest.raises(IndexError):
            source[bad]
    with pytest.raises(IndexError):
        source.render_batch([0, 10])


def _object_features(images):
    """Mean colour and a rotation-invariant radial profile of the pixels unlike the background."""
    images = images.astype(np.float32)
    n, s = images.shape[:2]
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
    mask = np.abs(images - np.median(border, 1)[:, None, None]).max(-1) > 40
    area = mask.sum((1, 2))
    assert area.min() > 0
    mean_colour = (images * mask[..., None]).sum((1, 2)) / area[:, None]
    yy, xx = np.mgrid[:s, :s]
    cy, cx = ((mask * g).sum((1, 2)) / area for g in (yy, xx))
    r = np.hypot(yy - cy[:, None, None], xx - cx[:, None, None]) / np.sqrt(area)[:, None, None]
    profile = np.stack([np.histogram(r[i][mask[i]], bins=10, range=(0, 1.5))[0] for i in range(n)])
    return mean_colour, profile / area[:, None]


def test_pretrain_images_carry_the_class():
    """Object colour names the class colour; a radial-profile nearest-centroid classifier,
    fitted on train and scored on test, recognises the shape far above chance (1/8)."""
    train, test = ShapesSource("train", size=512), ShapesSource("test", size=256)
    _, train_profile = _object_features(train.render_batch(range(512)))
    test_colour, test_profile = _object_features(test.render_batch(range(256)))
    rgb = np.array(list(COLOURS.values()), np.float32)
    colour_pred = np.argmin(((test_colour[:, None] - rgb) ** 2).sum(-1), 1)
    assert np.mean(colour_pred == shapes.CLASS_COLOUR[test.labels()]) > 0.9
    train_shape, test_shape = shapes.CLASS_SHAPE[train.labels()], shapes.CLASS_SHAPE[test.labels()]
    centroids = np.stack([train_profile[train_shape == k].mean(0) for k in range(len(SHAPES))])
    shape_pred = np.argmin(((test_profile[:, None] - centroids) ** 2).sum(-1), 1)
    assert np.mean(shape_pred == test_shape) > 0.6


def test_grid(tmp_path):
    picture = shapes.grid(ShapesSource(size=64), n_per_row=4, rows=2)
    assert picture.dtype == np.uint8 and picture.shape == (2 * 34, 4 * 34, 3)
    path = tmp_path / "grid.png"
    shapes.save_grid(path, scale=1)
    assert path.stat().st_size > 1000
