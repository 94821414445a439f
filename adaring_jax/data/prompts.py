"""Class prompts exactly as the upstream trainers build them.

- Class names: "_" becomes a space before a name goes into a template, in every trainer
  (CoOp `trainers/zsclip.py` L42-43; MMA `trainers/mmadapter.py` L102).
- `coop` style: CoOp's per-dataset template (`trainers/zsclip.py` CUSTOM_TEMPLATES, L13-29,
  the `template` of each preset). The zero-shot CLIP row of the published tables uses it.
- `mma` style: "a photo of a {}." on every dataset: MMA's TEXT_CTX_INIT "a photo of a" + " " +
  name + "." (`configs/trainers/MultiModalAdapter/vit_b16_ep5.yaml`, `trainers/mmadapter.py`
  L103), used for training and testing. AdaRing builds on MMA's code base and uses it too.
"""

from __future__ import annotations

from typing import Sequence

MMA_TEMPLATE = "a photo of a {}."
STYLES = ("mma", "coop")


def template(style: str, coop_template: str) -> str:
    """The template of a prompt `style` for a dataset whose CoOp template is `coop_template`."""
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; valid: {', '.join(STYLES)}")
    return MMA_TEMPLATE if style == "mma" else coop_template


def class_prompts(classnames: Sequence[str], template: str) -> list[str]:
    """One prompt per class, the name's underscores turned into spaces."""
    return [template.format(name.replace("_", " ")) for name in classnames]


def prompt_key(name: str) -> str:
    """What a class name's prompt depends on: "_" as a space, runs of spaces as one, case
    folded (CLIP's tokenizer lower-cases). Two names with one key get the same prompt."""
    return " ".join(str(name).replace("_", " ").split()).casefold()
