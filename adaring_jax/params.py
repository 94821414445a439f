r"""Trainable-parameter report of an experiment config, from shapes alone (no weights, no data).

    python -m adaring_jax.params --config=configs/fewshot.py:method=mma,arch=vit_b16

Prints one row per trainable tensor (name, shape, count), the totals by kind (a ring's
layer-specific slices -- its first core, which carries the layer mode -- its layer-shared cores,
dense kernels, biases, bank gates) and, as the last line, `trainable parameters: N`.
"""

from __future__ import annotations

import math

import jax
from absl import app
from ml_collections import config_flags

from adaring_jax import adapters, cli
from adaring_jax.errors import ConfigError
from adaring_jax.models import convert

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)


def report(config) -> tuple[list[tuple[str, tuple, int, str]], int]:
    """(rows of (name, shape, count, kind), total) for the config's adapter; the kind is one
    of `adapters.KINDS`, as the method labels its tensors."""
    model_config = convert.architecture(config.model.arch, config.model.checkpoint)
    spec = adapters.spec_from_config(config, model_config)
    shapes = adapters.param_shapes(spec)
    kinds = jax.tree.leaves(adapters.labels(spec))
    rows = []
    for (path, leaf), label in zip(jax.tree_util.tree_flatten_with_path(shapes)[0], kinds):
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        rows.append((name, tuple(leaf.shape), math.prod(leaf.shape), label))
    return rows, sum(r[2] for r in rows)


def by_kind(rows) -> dict[str, int]:
    """{kind: parameters} over `report`'s rows, in `adapters.KINDS` order, kinds present only."""
    totals = {k: 0 for k in adapters.KINDS}
    for *_, n, label in rows:
        totals[label] += n
    return {k: n for k, n in totals.items() if n}


def main(argv):
    if len(argv) > 1:
        return cli.fail(cli.UsageError(f"unexpected arguments: {argv[1:]}"))
    return cli.run(lambda: _print(_config()))


def _config():
    try:  # config_flags raises a config file's errors only now
        config = _CONFIG.value
    except Exception as e:  # noqa: BLE001
        raise ConfigError(cli.flag_error_message(e)) from e
    if config is None:
        raise ConfigError("no experiment config: pass --config=configs/<experiment>.py")
    return config


def _print(config):
    rows, total = report(config)
    width = max([len(r[0]) for r in rows] + [6])
    print(f"method: {config.method}")
    print(f"{'tensor':<{width}}  {'shape':<18}{'count':>10}")
    for name, shape, n, _ in rows:
        print(f"{name:<{width}}  {str(shape):<18}{n:>10,}")
    if total:
        print("by kind:")
        for k, n in by_kind(rows).items():
            print(f"  {k:<34}{n:>10,}  {n / total:6.1%}")
    print(f"trainable parameters: {total}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
