"""The one input API every dataset is served through: a random-access `Source`.

A source is an indexable sequence of examples `{"image": uint8 (H, W, 3), "label": int}` with
its class names and prompt template. Random access (rather than a stream) is what few-shot
protocols need: the few-shot draw picks indices from `labels()` without decoding any image,
and every process can read exactly its own indices, so the draw and the data seen do not
depend on the number of hosts. TFDS datasets (`tfds.data_source`), local CoOp-layout folders
and the procedural `shapes` world all implement it.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from adaring_jax.errors import UserError


class DataError(UserError, ValueError):
    """A dataset that is unknown, not prepared, or malformed."""


@runtime_checkable
class Source(Protocol):
    classnames: Sequence[str]  # class names, index = label
    template: str  # prompt template with one "{}" for the class name

    def __len__(self) -> int: ...

    def labels(self) -> np.ndarray:
        """int64 (len,) labels of all examples, without decoding images."""

    def __getitem__(self, index: int) -> dict:
        """{"image": uint8 (H, W, 3) RGB array, "label": int}"""


class Subset:
    """A view of a source restricted to `indices`, optionally relabelling classes."""

    def __init__(self, source: Source, indices, classnames=None, label_map=None):
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        self.classnames = list(classnames if classnames is not None else source.classnames)
        self.template = source.template
        self.label_map = None if label_map is None else np.asarray(label_map, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def labels(self) -> np.ndarray:
        labels = self.source.labels()[self.indices]
        return labels if self.label_map is None else self.label_map[labels]

    def __getitem__(self, index: int) -> dict:
        example = dict(self.source[int(self.indices[index])])
        if self.label_map is not None:
            example["label"] = int(self.label_map[example["label"]])
        return example
