"""The method table: a method is one module registered once. A toy method defined here runs
the whole job (config, checks, training, evaluation, parameter report, resume of its
identity) without an edit anywhere else, and the package keeps method names out of the job."""

import ast
import dataclasses
import os

import jax.numpy as jnp
import numpy as np
import pytest

from adaring_jax import adapters, params as params_report
from adaring_jax.adapters import base
from adaring_jax.errors import ConfigError
from adaring_jax.job import train
from adaring_jax.models import clip
from configs import base2novel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# A toy method: a rank-r Down/Up pair per tower and layer, no biases, in this module only.
def _make_spec(block, model_config):
    return _ToySpec("toy", base.widths(model_config),
                    base.adapted_layers(model_config, block.start, block.end), rank=block.rank)


@dataclasses.dataclass(frozen=True)
class _ToySpec(base.Spec):
    rank: int = 1


def _init(spec, seed):
    rng = np.random.default_rng(seed)
    return {t: {"down": jnp.asarray(0.1 * rng.standard_normal((spec.num_layers, d, spec.rank)),
                                    jnp.float32),
                "up": jnp.zeros((spec.num_layers, spec.rank, d), jnp.float32)}
            for t, d in zip(base.TOWERS, spec.widths)}


def _check(config):
    base.number("adapter.rank", config.adapter.rank, 1, integer=True)


TOY = base.Method(
    name="toy", summary="a low-rank pair per layer (test only)",
    config_block=lambda: {"start": 2, "end": 3, "rank": 2, "init_from": ""}, check=_check,
    make_spec=_make_spec, init=_init,
    layer_adapters=lambda p, spec: {t: clip.LayerAdapters((p[t]["down"], p[t]["up"]),
                                                          (None, None), 1.0, layers=spec.layers)
                                    for t in base.TOWERS},
    labels=lambda spec: {t: {"down": base.DENSE, "up": base.DENSE} for t in base.TOWERS},
    loss={"kl": 0.5})


@pytest.fixture
def toy():
    base.register(TOY)
    yield TOY
    del base.METHODS[TOY.name]


def test_a_registered_toy_method_runs_the_whole_job(toy, tmp_path, capsys):
    config = base2novel.get_config("smoke,method=toy")
    assert config.adapter.rank == 2 and config.loss.kl == 0.5
    rows, total = params_report.report(config)
    widths = clip.preset(config.model.arch).config
    layers = config.adapter.end - config.adapter.start + 1  # the smoke recipe's placement
    assert total == layers * 2 * 2 * (widths.vision.width + widths.text.width)  # down, up; rank
    assert params_report.by_kind(rows) == {base.DENSE: total}
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["method"] == "toy" and results["trainable_params"] == total
    assert set(results["adapted"]) == {"base", "novel", "hm"}
    # Its own checks and its identity come with it.
    bad = config.copy_and_resolve_references()
    bad.unlock()
    bad.adapter.rank = 0
    with pytest.raises(ConfigError, match="config.adapter.rank=0 must be an integer >= 1"):
        train.train_and_evaluate(bad, str(tmp_path / "bad"))
    other = base2novel.get_config("smoke,method=toy")
    other.unlock()
    other.adapter.rank = 3
    with pytest.raises(Exception, match="adapter.rank: the run has 2, this config has 3"):
        train.train_and_evaluate(other, str(tmp_path))


def test_unknown_method_lists_the_registered_ones(toy):
    assert list(adapters.METHODS)[:3] == ["zeroshot", "mma", "adaring"]
    assert list(adapters.METHODS)[-1] == "toy"  # registered last, listed with the others
    with pytest.raises(ConfigError, match="unknown method 'lora'; valid: "
                                          + ", ".join(adapters.METHODS) + "$"):
        base2novel.get_config("method=lora")


def test_a_method_changed_after_building_is_refused(tmp_path):
    config = base2novel.get_config("smoke")
    config.unlock()
    config.method = "mma"
    with pytest.raises(ConfigError, match="the method was changed after the config was built"):
        train.train_and_evaluate(config, str(tmp_path))
    assert not os.listdir(tmp_path)


def _package_modules():
    for folder, _, files in os.walk(os.path.join(ROOT, "adaring_jax")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                yield os.path.relpath(path, ROOT), ast.parse(open(path).read())


def test_at_most_three_places_outside_the_method_package_branch_on_a_method_name():
    names = set(adapters.METHODS)
    places = []
    for rel, tree in _package_modules():
        if rel.startswith(os.path.join("adaring_jax", "adapters")):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                consts = [c for c in [node.left, *node.comparators]
                          if isinstance(c, ast.Constant) and c.value in names]
                consts += [e for c in node.comparators if isinstance(c, (ast.Tuple, ast.List,
                                                                         ast.Set))
                           for e in c.elts if isinstance(e, ast.Constant) and e.value in names]
                if consts:
                    places.append(f"{rel}:{node.lineno}")
    assert len(places) <= 3, places
