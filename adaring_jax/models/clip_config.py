"""CLIP architectures: tower configurations and the named presets (no weights, no Flax).

Field names follow OpenAI CLIP; `models/convert.py` maps them to Hugging Face's config.json.
"""

from __future__ import annotations

import dataclasses

import jax

ACTIVATIONS = {
    # OpenAI CLIP's sigmoid approximation of GELU.
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    # Hugging Face "gelu" is the exact (erf) GELU.
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    image_size: int
    patch_size: int
    width: int  # hidden_size
    layers: int  # num_hidden_layers
    heads: int  # num_attention_heads
    mlp_dim: int  # intermediate_size
    act: str = "quick_gelu"  # hidden_act
    layer_norm_eps: float = 1e-5
    num_channels: int = 3

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclasses.dataclass(frozen=True)
class TextConfig:
    vocab_size: int
    context_length: int  # max_position_embeddings
    width: int
    layers: int
    heads: int
    mlp_dim: int
    act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    # Hugging Face pooling: eos_token_id == 2 (legacy OpenAI configs) pools at argmax(ids);
    # any other value pools at the first position holding eos_token_id.
    eos_token_id: int = 2
    bos_token_id: int = 1
    pad_token_id: int = 1


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    vision: VisionConfig
    text: TextConfig
    projection_dim: int
    logit_scale_init: float = 2.6592  # log(1 / 0.07)
    dtype: str = "float32"  # compute dtype; parameters stay float32
    # Recompute each block's activations in the backward pass instead of storing them: less
    # memory for the large towers (L/14-336) at the cost of one more forward of the blocks.
    remat: bool = False
    # Run the layers as straight-line code (the layer scan unrolled) and attention
    # heads-major (`attention.heads_major`) where cuDNN's fused attention does not run. The
    # same arithmetic, grouped so that XLA fuses across layers and copies less: on 2 CPU cores
    # a train step is 1.2x (ViT-B/16) to 1.4x (the embedded tower) faster, but float sums
    # round differently, so a trained run's digits are not those of the default. Training
    # only: `model.fast_step`.
    unrolled: bool = False

    def __post_init__(self):
        for name, tower in (("vision", self.vision), ("text", self.text)):
            if tower.act not in ACTIVATIONS:
                raise ValueError(f"{name} activation {tower.act!r} is not supported; "
                                 f"valid: {sorted(ACTIVATIONS)}")
            if tower.width % tower.heads:
                raise ValueError(f"{name} width {tower.width} is not divisible by "
                                 f"{tower.heads} heads")
        if self.vision.image_size % self.vision.patch_size:
            raise ValueError(f"image_size {self.vision.image_size} is not a multiple of "
                             f"patch_size {self.vision.patch_size}")


def _openai(image_size, patch_size, vision_width, vision_layers, vision_heads,
            text_width, text_heads, projection_dim) -> CLIPConfig:
    return CLIPConfig(
        vision=VisionConfig(image_size, patch_size, vision_width, vision_layers, vision_heads,
                            4 * vision_width),
        text=TextConfig(vocab_size=49408, context_length=77, width=text_width, layers=12,
                        heads=text_heads, mlp_dim=4 * text_width,
                        bos_token_id=49406, pad_token_id=1),
        projection_dim=projection_dim)


PRESETS: dict[str, CLIPConfig] = {
    "ViT-B/32": _openai(224, 32, 768, 12, 12, 512, 8, 512),
    "ViT-B/16": _openai(224, 16, 768, 12, 12, 512, 8, 512),
    "ViT-L/14": _openai(224, 14, 1024, 24, 16, 768, 12, 768),
    "ViT-L/14-336": _openai(336, 14, 1024, 24, 16, 768, 12, 768),
    # The embedded default's architecture, pretrained on the shapes world (configs/
    # pretrain_shapes.py); its vocabulary size is set from the world's captions.
    "shapes-vit": CLIPConfig(
        vision=VisionConfig(32, 8, 96, 6, 4, 384),
        text=TextConfig(vocab_size=1000, context_length=16, width=64, layers=6, heads=4,
                        mlp_dim=256),
        projection_dim=64),
    # Tiny architectures for tests and smoke runs (random weights, seconds on a CPU).
    "tiny": CLIPConfig(
        vision=VisionConfig(32, 8, 32, 4, 2, 64),
        text=TextConfig(vocab_size=1000, context_length=16, width=32, layers=4, heads=2,
                        mlp_dim=64, eos_token_id=999, bos_token_id=998, pad_token_id=999),
        projection_dim=16),
    "tiny-gelu": CLIPConfig(
        vision=VisionConfig(30, 6, 24, 3, 3, 48, act="gelu"),
        text=TextConfig(vocab_size=1000, context_length=12, width=24, layers=3, heads=3,
                        mlp_dim=48, act="gelu"),
        projection_dim=8),
}
# Config-friendly aliases: `arch=vit_b16` on the command line.
ALIASES = {"vit_b32": "ViT-B/32", "vit_b16": "ViT-B/16", "vit_l14": "ViT-L/14",
           "vit_l14_336": "ViT-L/14-336", "tiny_gelu": "tiny-gelu",
           "shapes_vit": "shapes-vit"}
