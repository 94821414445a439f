"""The embedded suite: its tasks are datasets, deterministic, with base and novel classes, and
each differs from the others the way its row in the table says."""

import numpy as np
import pytest

from adaring_jax import data
from adaring_jax.data import presets, shapes, shapes_suite
from adaring_jax.data.shapes_suite import SUITE, TASKS, SuiteSource


def test_every_task_is_a_dataset_and_the_suite_lists_them_all():
    assert presets.SHAPES_SUITE == tuple(TASKS)
    assert set(SUITE) == {"shapes", *TASKS} and len(SUITE) >= 8
    for name in SUITE:
        source = data.open_split(name, "test", size=64, image_size=32)
        assert source.labels().tolist() == [i % len(source.classnames) for i in range(64)]
        assert len(set(map(data.prompts.prompt_key, source.classnames))) == len(source.classnames)
        assert len(source.classnames) >= 8 and len(source.classnames) % 2 == 0


def test_class_sets():
    assert TASKS["shapes_colour"].classnames[:2] == ["red object", "green object"]
    assert TASKS["shapes_shape"].classnames[:2] == ["circle", "triangle"]
    lookalike = TASKS["shapes_lookalike"].classnames
    assert len(lookalike) == 16 and set(lookalike) < set(shapes.CLASSNAMES)
    for name in ("shapes_mild", "shapes_clutter", "shapes_noise"):
        assert TASKS[name].classnames == shapes.CLASSNAMES  # renderings of one class set
    # Base and novel halves of the look-alike task hold both members of some pair.
    base, novel = lookalike[:8], lookalike[8:]
    assert {n.split()[0] for n in base} == {n.split()[0] for n in novel}


@pytest.mark.parametrize("name", list(TASKS))
def test_deterministic_batch_independent_and_distinct(name):
    a = SuiteSource(name, "test", size=200, seed=2)
    batch = a.render_batch([5, 199, 5, 0])
    assert batch.dtype == np.uint8 and batch.shape == (4, 32, 32, 3)
    assert np.array_equal(batch[0], batch[2])
    assert np.array_equal(batch[1], a.render_batch([199])[0])  # any batch, same bytes
    assert np.array_equal(a[0]["image"], batch[3]) and a[0]["label"] == 0
    other = SuiteSource(name, "train", size=200, seed=2).render_batch([5])[0]
    assert not np.array_equal(other, batch[0])
    for task in TASKS:
        if task != name:
            assert not np.array_equal(SuiteSource(task, "test", size=200, seed=2)[5]["image"],
                                      batch[0])


def _noise(images) -> float:
    """Pixel noise std estimate: the std of differences of horizontal neighbours / sqrt 2."""
    d = np.diff(images.astype(np.float32), axis=2)
    return float(np.median(np.abs(d)) / 0.6745 / np.sqrt(2))


def _object_share(name) -> float:
    """Share of pixels whose colour is saturated (the object; backgrounds are grey)."""
    images = SuiteSource(name, "test", size=64).render_batch(range(64)).astype(np.float32)
    saturation = images.max(-1) - images.min(-1)
    return float(np.mean(saturation > 100))


def test_renderings_differ_as_the_table_says():
    def images(name):
        return SuiteSource(name, "test", size=64).render_batch(range(64))
    assert _noise(images("shapes_noise")) > 4 * _noise(images("shapes_mild"))
    assert _object_share("shapes_small") < _object_share("shapes_medium") / 3
    # Clutter hides part of each object behind a bar: less of it is visible than in mild.
    assert _object_share("shapes_clutter") < _object_share("shapes_mild")


def test_colour_only_classes_show_their_colour_on_any_shape():
    source = SuiteSource("shapes_colour", "test", size=256)
    images = source.render_batch(range(256)).astype(np.float32)
    saturation = images.max(-1) - images.min(-1)
    labels = source.labels()
    hits = []
    for image, sat, label in zip(images, saturation, labels):
        name = source.classnames[label].split()[0]
        if name == "white":
            continue
        top = image[sat >= np.quantile(sat, 0.97)].mean(0)
        nearest = np.argmin(((shapes.RGB - top) ** 2).sum(-1))
        hits.append(list(shapes.COLOURS)[nearest] == name)
    assert np.mean(hits) > 0.9


def test_grid_rows_show_base_then_novel_classes():
    picture = shapes_suite.grid_rows("shapes_colour", per_row=4)
    assert picture.shape == (2 * 34, 4 * 34, 3) and picture.dtype == np.uint8


def test_unknown_task():
    with pytest.raises(ValueError, match="valid: shapes_mild"):
        SuiteSource("shapes_nope")
