"""A run's identity: the whole resolved config, less the few fields that cannot change a result.

Two runs are the same experiment exactly when their identities are equal. The identity is the
config flattened to dotted fields (`data.crop_scale`); every field is in it, today's and any
added later, except those on `NOT_IDENTITY`: how often the run logs and checkpoints, how many
checkpoints it keeps, how many threads read its images, whether a list may name files outside
its folder. The workdir records the identity in `experiment.json` and refuses another one
(`workdir.check`), and the commands that read a finished run check its `config.json` against
it (`runs.read`).
"""

from __future__ import annotations

import json
from typing import Any

# Fields that cannot change a result: a resumed run continues exactly whatever they are.
NOT_IDENTITY = (
    "log_every",  # steps between metric records
    "checkpoint_every",  # steps between checkpoints (resume is exact from any step)
    "max_to_keep",  # checkpoints kept
    "data.num_threads",  # image decode/augment threads (batches are pure functions of the step)
    "data.allow_outside",  # lets a list name files outside its folder; the files are the data
)
_ABSENT = object()


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def of(config, data: dict | None = None) -> dict[str, Any]:
    """The identity of `config` (a ConfigDict, or a config as read back from config.json):
    {dotted field: value as JSON reads it back}, sorted. `data` adds what the config names but
    does not hold: the digests of the split of the user's own data (`data.split`) and of its
    images' bytes (`data.images`), so that a folder whose images changed is another
    experiment."""
    tree = json.loads(config.to_json()) if hasattr(config, "to_json") else config
    tree = json.loads(json.dumps(tree))  # tuples -> lists, as it reads back
    out = {k: v for k, v in _flatten(tree).items() if k not in NOT_IDENTITY}
    out.update(data or {})
    return dict(sorted(out.items()))


DATA_FIELDS = ("data.split", "data.images")  # `of`'s data fields: recorded, not in config.json


def differences(recorded: dict, current: dict) -> list[str]:
    """One line per field whose value differs, with both values."""
    show = lambda v: "<absent>" if v is _ABSENT else json.dumps(v)  # noqa: E731
    return [f"{k}: the run has {show(recorded.get(k, _ABSENT))}, "
            f"this config has {show(current.get(k, _ABSENT))}"
            for k in sorted(recorded.keys() | current.keys())
            if recorded.get(k, _ABSENT) != current.get(k, _ABSENT)]
