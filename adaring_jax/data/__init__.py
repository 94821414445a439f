"""Datasets, protocols and the input pipeline behind one random-access `Source` API.

    from adaring_jax import data
    data.DATASETS                              # name -> preset: 15 CoOp-suite sets + "shapes" and its suite
    data.fewshot_indices(labels, shots, seed)  # Dassl's draw: sorted indices, `shots` per class
    data.draw_train(source, shots, seed)       # the same, or upstream's cached draw, and how
    data.base_novel_split(num_classes)         # (base class ids, novel class ids)
    data.open_split(name, "train", data_dir)   # a random-access source
"""

from adaring_jax.data.pipeline import TrainLoader, eval_batches
from adaring_jax.data.presets import BENCHMARK, DATASETS, DOMAIN_TARGETS, DatasetPreset
from adaring_jax.data.prompts import class_prompts
from adaring_jax.data.protocols import (base_novel_split, draw_train, fewshot_indices,
                                        label_lookup, relabel, validation_shots)
from adaring_jax.data.source import Source, Subset
from adaring_jax.data.sources import DataError, open_split

__all__ = ["BENCHMARK", "DATASETS", "DOMAIN_TARGETS", "DataError", "DatasetPreset", "Source",
           "Subset", "TrainLoader", "base_novel_split", "class_prompts", "draw_train",
           "eval_batches", "fewshot_indices",
           "label_lookup", "open_split", "relabel", "validation_shots"]
