"""Small generated datasets in CoOp's folder layout, for tests of the real-data code paths.

`make(root, names)` writes each named benchmark dataset the way CoOp's DATASETS.md lays it out
(split_zhou_*.json beside the images; FGVC-Aircraft's official variant files; ImageNet's
classnames.txt with wnid folders), with a few classes of tiny solid-colour JPEGs.
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from adaring_jax.data import presets


def _image(path: str, rng: np.random.Generator, label: int):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    base = np.array([40 + 50 * label, 200 - 40 * label, 90 + 30 * (label % 3)], np.float32)
    pixels = np.clip(base + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, "JPEG")


def make(root: str, names, num_classes: int = 4, per_class: dict | None = None, seed: int = 0):
    """Write datasets `names` under `root`; per_class: images per class and split."""
    per_class = per_class or {"train": 3, "val": 1, "test": 2}
    rng = np.random.default_rng(seed)
    for name in names:
        p = presets.DATASETS[name]
        top = os.path.join(root, p.coop_dir)
        classes = [f"{name} class {c}" for c in range(num_classes)]
        if p.wordnet_ids:  # ImageNet: classnames.txt + images/{train,val}/<wnid>/
            wnids = [f"n{c:08d}" for c in range(num_classes)]
            os.makedirs(top, exist_ok=True)
            with open(os.path.join(top, "classnames.txt"), "w") as f:
                f.writelines(f"{w} {c}\n" for w, c in zip(wnids, classes))
            for folder, n in (("train", per_class["train"]), ("val", per_class["test"])):
                for c, w in enumerate(wnids):
                    for i in range(n):
                        _image(os.path.join(top, p.image_dir, folder, w, f"{i}.jpg"), rng, c)
        elif p.split_file is None:  # FGVC-Aircraft: variants.txt + images_variant_<split>.txt
            os.makedirs(top, exist_ok=True)
            with open(os.path.join(top, "variants.txt"), "w") as f:
                f.writelines(f"{c}\n" for c in classes)
            for split, n in per_class.items():
                rows = []
                for c, cname in enumerate(classes):
                    for i in range(n):
                        image_id = f"{split}{c}{i:03d}"
                        _image(os.path.join(top, p.image_dir, image_id + ".jpg"), rng, c)
                        rows.append(f"{image_id} {cname}\n")
                with open(os.path.join(top, f"images_variant_{split}.txt"), "w") as f:
                    f.writelines(rows)
        else:  # CoOp's split_zhou_*.json: {split: [[relative path, label, classname], ...]}
            table = {}
            for split, n in per_class.items():
                table[split] = []
                for c, cname in enumerate(classes):
                    for i in range(n):
                        rel = f"c{c}/{split}_{i}.jpg"
                        _image(os.path.join(top, p.image_dir, rel), rng, c)
                        table[split].append([rel, c, cname])
            with open(os.path.join(top, p.split_file), "w") as f:
                json.dump(table, f)
