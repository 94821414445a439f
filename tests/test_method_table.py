"""The method table: a method is one module registered once. A toy method defined here runs
the whole job (config, checks, training, evaluation, parameter report, resume of its
identity) without an edit anywhere else, and the package keeps method names out of the job."""

import ast
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaring_jax import adapters, params as params_report
from adaring_jax.adapters import base
from adaring_jax.errors import ConfigError
from adaring_jax.job import runs, train
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


# A second toy: low-rank updates of the attention output (o) and the MLP's fc1 and a dense
# update of fc2, in this module only: the towers take weight updates at any site.
@dataclasses.dataclass(frozen=True)
class _SitesSpec(base.Spec):
    mlp: tuple[int, int] = (0, 0)  # (vision, text) MLP widths


def _sites_spec(block, model_config):
    return _SitesSpec("toy_sites", base.widths(model_config),
                      base.adapted_layers(model_config, block.start, block.end),
                      mlp=(model_config.vision.mlp_dim, model_config.text.mlp_dim))


def _sites_init(spec, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for t, d, m in zip(base.TOWERS, spec.widths, spec.mlp):
        n = spec.num_layers
        out[t] = {"o": {"a": 0.1 * rng.standard_normal((n, d, 1)), "b": np.zeros((n, 1, d))},
                  "fc1": {"a": 0.1 * rng.standard_normal((n, d, 1)), "b": np.zeros((n, 1, m))},
                  "fc2": {"b": np.zeros((n, m, d))}}
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), out)


SITES_TOY = base.Method(
    name="toy_sites", summary="o and MLP updates (test only)",
    config_block=lambda: {"start": 2, "end": 3, "rank": 1, "init_from": ""}, check=_check,
    make_spec=_sites_spec, init=_sites_init,
    layer_adapters=lambda p, spec: {t: clip.LayerAdapters(
        layers=spec.layers, updates={s: clip.Update(tuple(f[k] for k in "ab" if k in f), 2.0)
                                       for s, f in p[t].items()})
        for t in base.TOWERS},
    labels=lambda spec: jax.tree.map(lambda _: base.DENSE, _sites_init(spec, 0)))


def test_a_toy_method_writing_o_and_mlp_updates_runs_the_whole_job(tmp_path):
    base.register(SITES_TOY)
    try:
        config = base2novel.get_config("smoke,method=toy_sites")
        model = clip.preset(config.model.arch).config
        _, total = params_report.report(config)
        layers = config.adapter.end - config.adapter.start + 1
        assert total == layers * sum(d + d + d + m + m * d for d, m in  # o, fc1 (rank 1), fc2
                                     ((model.vision.width, model.vision.mlp_dim),
                                      (model.text.width, model.text.mlp_dim)))
        results = train.train_and_evaluate(config, str(tmp_path))
        assert results["method"] == "toy_sites" and results["trainable_params"] == total
        # Trained: every update's zero factor moved away from its zero start.
        final = runs.load(str(tmp_path)).adapters
        for t in base.TOWERS:
            for site in ("o", "fc1", "fc2"):
                assert float(jnp.abs(final[t][site]["b"]).max()) > 0, (t, site)
        assert set(results["adapted"]) == {"base", "novel", "hm"}
    finally:
        del base.METHODS[SITES_TOY.name]


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
