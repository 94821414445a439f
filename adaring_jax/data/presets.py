"""Dataset presets: where each benchmark dataset lives, its class names and prompt template.

Names follow CoOp's dataset configs. A dataset is read from a local directory in CoOp's layout
when one exists under the data dir (CoOp split files make numbers comparable with published
ones), else from TFDS when TFDS has it. Class names from TFDS are cleaned to CoOp's (`clean`);
from a CoOp split file they are taken as written there. The ImageNet family needs CoOp's
`classnames.txt` (wnid -> readable name) in its folder: TFDS only knows WordNet ids.
"""

from __future__ import annotations

import dataclasses
from typing import Callable


def _spaces(name: str) -> str:
    return name.replace("_", " ")


def _pets(name: str) -> str:
    return name.lower().replace("_", " ")


_CALTECH_RENAMES = {"airplanes": "airplane", "faces": "face", "leopards": "leopard",
                    "motorbikes": "motorbike"}


def _caltech(name: str) -> str:
    return _spaces(_CALTECH_RENAMES.get(name, name))


def _cars(name: str) -> str:
    # CoOp puts the model year first: "AM General Hummer SUV 2000" -> "2000 AM General ...".
    words = name.split(" ")
    return " ".join([words[-1], *words[:-1]])


def _sun397(name: str) -> str:
    # "/a/apartment_building/outdoor" -> "outdoor apartment building" (meta category first).
    parts = name.strip("/").split("/")[1:]
    return _spaces(" ".join(reversed(parts)))


_EUROSAT = {"AnnualCrop": "Annual Crop Land", "Forest": "Forest",
            "HerbaceousVegetation": "Herbaceous Vegetation Land", "Highway": "Highway or Road",
            "Industrial": "Industrial Buildings", "Pasture": "Pasture Land",
            "PermanentCrop": "Permanent Crop Land", "Residential": "Residential Buildings",
            "River": "River", "SeaLake": "Sea or Lake"}


# The embedded suite's further tasks (data/shapes_suite.py defines them; named here so that the
# table of datasets does not import the renderer).
SHAPES_SUITE = ("shapes_mild", "shapes_medium", "shapes_colour", "shapes_shape",
                "shapes_lookalike", "shapes_small", "shapes_clutter", "shapes_texture",
                "shapes_noise")


@dataclasses.dataclass(frozen=True)
class DatasetPreset:
    name: str
    template: str  # CoOp's prompt template
    coop_dir: str  # folder under the data dir in CoOp's layout
    image_dir: str = ""  # images folder inside coop_dir ("" = coop_dir itself)
    split_file: str | None = None  # CoOp split json inside coop_dir
    tfds_name: str | None = None
    tfds_splits: tuple[tuple[str, str], ...] = ()  # (our split, TFDS split)
    clean: Callable[[str], str] = _spaces  # TFDS label name -> CoOp class name
    exclude: tuple[str, ...] = ()  # TFDS classes CoOp drops
    wordnet_ids: bool = False  # ImageNet family: labels are wnids, names from classnames.txt
    subset: bool = False  # ImageNet-A/R: only the classes present (200) are used
    test_fraction: float = 0.0  # TFDS sets without a test split: held-out share per class
    tfds_file_key: str | None = "file_name"  # TFDS feature with each image's source file name
    tfds_note: str = ""  # how the TFDS copy differs from CoOp's files, if it does

    @property
    def splits(self) -> dict[str, str]:
        return dict(self.tfds_splits)


def _imagenet_variant(name, coop_dir, image_dir, tfds_name, subset=False):
    return DatasetPreset(name, "a photo of a {}.", coop_dir, image_dir, tfds_name=tfds_name,
                         tfds_splits=(("test", "test"),), wordnet_ids=True, subset=subset)


_PRESETS = [
    DatasetPreset("imagenet", "a photo of a {}.", "imagenet", "images", tfds_name="imagenet2012",
                  tfds_splits=(("train", "train"), ("val", "validation"), ("test", "validation")),
                  wordnet_ids=True),
    DatasetPreset("caltech101", "a photo of a {}.", "caltech-101", "101_ObjectCategories",
                  "split_zhou_Caltech101.json", "caltech101",
                  (("train", "train"), ("val", "train"), ("test", "test")), _caltech,
                  exclude=("background_google", "faces_easy"), tfds_file_key="image/file_name"),
    DatasetPreset("oxford_pets", "a photo of a {}, a type of pet.", "oxford_pets", "images",
                  "split_zhou_OxfordPets.json", "oxford_iiit_pet",
                  (("train", "train"), ("val", "train"), ("test", "test")), _pets),
    DatasetPreset("stanford_cars", "a photo of a {}.", "stanford_cars", "",
                  "split_zhou_StanfordCars.json", "cars196",
                  (("train", "train"), ("val", "train"), ("test", "test")), _cars,
                  tfds_file_key="id"),
    DatasetPreset("oxford_flowers", "a photo of a {}, a type of flower.", "oxford_flowers", "jpg",
                  "split_zhou_OxfordFlowers.json", "oxford_flowers102",
                  (("train", "train"), ("val", "validation"), ("test", "test"))),
    DatasetPreset("food101", "a photo of {}, a type of food.", "food-101", "images",
                  "split_zhou_Food101.json", "food101",
                  (("train", "train"), ("val", "train"), ("test", "validation")),
                  tfds_file_key=None),
    # FGVCAircraft is not in TFDS: local folder with the official variant split files only.
    DatasetPreset("fgvc_aircraft", "a photo of a {}, a type of aircraft.", "fgvc_aircraft",
                  "images"),
    DatasetPreset("sun397", "a photo of a {}.", "sun397", "SUN397", "split_zhou_SUN397.json",
                  "sun397/standard-part1-120k",
                  (("train", "train"), ("val", "validation"), ("test", "test")), _sun397,
                  tfds_note="TFDS stores these images resized to at most 120k pixels"),
    DatasetPreset("dtd", "{} texture.", "dtd", "images", "split_zhou_DescribableTextures.json",
                  "dtd", (("train", "train"), ("val", "validation"), ("test", "test"))),
    DatasetPreset("eurosat", "a centered satellite photo of {}.", "eurosat", "2750",
                  "split_zhou_EuroSAT.json", "eurosat/rgb",
                  (("train", "train"), ("val", "train"), ("test", "train")),
                  lambda n: _EUROSAT.get(n, n), test_fraction=0.2, tfds_file_key="filename"),
    # UCF101 middle frames (CoOp's UCF-101-midframes): local folder only.
    DatasetPreset("ucf101", "a photo of a person doing {}.", "ucf101", "UCF-101-midframes",
                  "split_zhou_UCF101.json"),
    _imagenet_variant("imagenetv2", "imagenetv2", "imagenetv2-matched-frequency-format-val",
                      "imagenet_v2"),
    _imagenet_variant("imagenet_sketch", "imagenet-sketch", "images", "imagenet_sketch"),
    _imagenet_variant("imagenet_a", "imagenet-adversarial", "imagenet-a", "imagenet_a",
                      subset=True),
    _imagenet_variant("imagenet_r", "imagenet-rendition", "imagenet-r", "imagenet_r",
                      subset=True),
    # The embedded procedural world (adaring_jax.data.shapes): generated, never downloaded;
    # and its suite of further tasks (adaring_jax.data.shapes_suite).
    DatasetPreset("shapes", "a photo of a {}.", ""),
    *(DatasetPreset(name, "a photo of a {}.", "") for name in SHAPES_SUITE),
]
DATASETS: dict[str, DatasetPreset] = {p.name: p for p in _PRESETS}
# The 11 datasets of the base-to-novel and few-shot benchmarks (CoOp order).
BENCHMARK = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers",
             "food101", "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
DOMAIN_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
# Generic prompt templates (from CLIP's ImageNet prompt-engineering study) that, with each
# dataset's own template, form the ensemble behind the frozen model's zero-shot text features.
ENSEMBLE_TEMPLATES = ("itap of a {}.", "a bad photo of the {}.", "a origami {}.",
                      "a photo of the large {}.", "a {} in a video game.", "art of the {}.",
                      "a photo of the small {}.")


def is_shapes(name: str) -> bool:
    """The embedded world's tasks: rendered, not read."""
    return name == "shapes" or name.startswith("shapes_")


def get(name: str) -> DatasetPreset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return DATASETS[name]
