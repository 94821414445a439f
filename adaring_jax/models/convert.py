"""Hugging Face CLIP checkpoints <-> our parameter trees.

Our parameter names are Hugging Face's with the transformer blocks stacked over depth, so the
name map is derived, not tabulated: `vision_model/encoder/layers/mlp/fc1/kernel[i]` is
`vision_model.encoder.layers.{i}.mlp.fc1.weight` transposed; `scale` and `embedding` leaves are
`weight`; a 4-d conv kernel (kh, kw, in, out) is PyTorch's (out, in, kh, kw).

Loading is strict: every expected tensor must be present with the expected shape and nothing else
may be (apart from PyTorch's non-parameter `position_ids` buffers); otherwise the error names them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import urllib.parse
from typing import Any

import jax
import numpy as np

from adaring_jax.errors import UserError
from adaring_jax.models import clip
from adaring_jax.models.preprocess import CLIP_MEAN, CLIP_STD

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")
# Files fetched for a hub id; the first of WEIGHT_FILES present is used.
_HUB_PATTERNS = ["config.json", "*.safetensors", "model.safetensors.index.json",
                 "preprocessor_config.json", *TOKENIZER_FILES]
_IGNORED_BUFFERS = re.compile(r"^(text|vision)_model\.embeddings\.position_ids$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Checkpoints shipped inside the package, by name: `config.model.checkpoint="shapes-clip"` is the
# tiny CLIP pretrained on the shapes world (configs/pretrain_shapes.py), in Hugging Face format.
EMBEDDED = {"shapes-clip": os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets",
                                        "shapes_clip")}


class BackboneError(UserError, ValueError):
    """A CLIP weights directory (Hugging Face format) that cannot be loaded as the requested
    model; distinct from `checkpoint.CheckpointError` (Orbax training checkpoints)."""


# ---------------------------------------------------------------------------------------------
# config.json <-> CLIPConfig

# (our field, HF field, HF default) per tower; HF defaults are CLIPTextConfig/CLIPVisionConfig's.
_TEXT_FIELDS = [("vocab_size", "vocab_size", 49408), ("context_length",
                "max_position_embeddings", 77), ("width", "hidden_size", 512),
                ("layers", "num_hidden_layers", 12), ("heads", "num_attention_heads", 8),
                ("mlp_dim", "intermediate_size", 2048), ("act", "hidden_act", "quick_gelu"),
                ("layer_norm_eps", "layer_norm_eps", 1e-5), ("eos_token_id", "eos_token_id", 2),
                ("bos_token_id", "bos_token_id", 1), ("pad_token_id", "pad_token_id", 1)]
_VISION_FIELDS = [("image_size", "image_size", 224), ("patch_size", "patch_size", 32),
                  ("width", "hidden_size", 768), ("layers", "num_hidden_layers", 12),
                  ("heads", "num_attention_heads", 12), ("mlp_dim", "intermediate_size", 3072),
                  ("act", "hidden_act", "quick_gelu"), ("layer_norm_eps", "layer_norm_eps", 1e-5),
                  ("num_channels", "num_channels", 3)]


def config_from_hf(hf: dict[str, Any], dtype: str = "float32") -> clip.CLIPConfig:
    """A Hugging Face CLIP `config.json` dict -> CLIPConfig (missing keys take HF defaults)."""
    if hf.get("model_type", "clip") != "clip":
        raise BackboneError(f"config.json has model_type {hf.get('model_type')!r}; "
                            "only 'clip' (CLIPModel) checkpoints are supported")
    text = hf.get("text_config") or {}
    vision = hf.get("vision_config") or {}
    return clip.CLIPConfig(
        vision=clip.VisionConfig(**{ours: vision.get(theirs, default)
                                    for ours, theirs, default in _VISION_FIELDS}),
        text=clip.TextConfig(**{ours: text.get(theirs, default)
                                for ours, theirs, default in _TEXT_FIELDS}),
        projection_dim=hf.get("projection_dim", 512),
        logit_scale_init=hf.get("logit_scale_init_value", 2.6592),
        dtype=dtype)


def config_to_hf(cfg: clip.CLIPConfig) -> dict[str, Any]:
    """CLIPConfig -> a `config.json` dict that `transformers.CLIPModel` loads."""
    def tower(c, fields):
        d = {theirs: getattr(c, ours) for ours, theirs, _ in fields}
        d["projection_dim"] = cfg.projection_dim
        return d
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": cfg.projection_dim,
        "logit_scale_init_value": cfg.logit_scale_init,
        "initializer_factor": 1.0,
        "dtype": "float32",
        "text_config": tower(cfg.text, _TEXT_FIELDS),
        "vision_config": tower(cfg.vision, _VISION_FIELDS),
    }


# ---------------------------------------------------------------------------------------------
# parameter tree <-> HF state dict


def _hf_leaf(path: tuple[str, ...]) -> tuple[str, ...]:
    leaf = {"kernel": "weight", "scale": "weight", "embedding": "weight"}.get(path[-1], path[-1])
    return (*path[:-1], leaf)


def _to_torch_layout(x: np.ndarray, leaf: str) -> np.ndarray:
    if leaf == "kernel" and x.ndim == 2:
        return x.T
    if leaf == "kernel" and x.ndim == 4:  # (kh, kw, in, out) -> (out, in, kh, kw)
        return x.transpose(3, 2, 0, 1)
    return x


def _from_torch_layout(x: np.ndarray, leaf: str) -> np.ndarray:
    if leaf == "kernel" and x.ndim == 2:
        return x.T
    if leaf == "kernel" and x.ndim == 4:  # (out, in, kh, kw) -> (kh, kw, in, out)
        return x.transpose(2, 3, 1, 0)
    return x


def _stacked(path: tuple[str, ...]) -> bool:
    return "layers" in path


def _expected(shapes) -> dict[str, tuple[tuple, tuple[str, ...], int | None]]:
    """HF name -> (torch shape, our path, layer index or None), from our param shapes."""
    out = {}
    for keypath, s in jax.tree_util.tree_flatten_with_path(shapes)[0]:
        path = tuple(k.key for k in keypath)
        leaf = path[-1]
        hf = _hf_leaf(path)
        if _stacked(path):
            i_layers = path.index("layers")
            for i in range(s.shape[0]):
                shape = _to_torch_layout(np.empty(s.shape[1:], np.int8), leaf).shape
                name = ".".join((*hf[:i_layers + 1], str(i), *hf[i_layers + 1:]))
                out[name] = (shape, path, i)
        else:
            out[".".join(hf)] = (_to_torch_layout(np.empty(s.shape, np.int8), leaf).shape,
                                 path, None)
    return out


def params_to_hf(params) -> dict[str, np.ndarray]:
    """Our parameter tree -> {HF name: float32 array in PyTorch layout}."""
    tensors = {}
    for keypath, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        path = tuple(k.key for k in keypath)
        x = np.asarray(jax.device_get(x), np.float32)
        hf = _hf_leaf(path)
        if _stacked(path):
            i_layers = path.index("layers")
            for i in range(x.shape[0]):
                name = ".".join((*hf[:i_layers + 1], str(i), *hf[i_layers + 1:]))
                tensors[name] = np.array(_to_torch_layout(x[i], path[-1]), order="C")
        else:
            tensors[".".join(hf)] = np.array(_to_torch_layout(x, path[-1]), order="C")
    return tensors


def params_from_hf(model: clip.CLIP, tensors: dict[str, np.ndarray], source: str = "checkpoint"):
    """{HF name: array} -> our parameter tree for `model`; strict about names and shapes."""
    expected = _expected(clip.param_shapes(model))
    given = {k for k in tensors if not _IGNORED_BUFFERS.match(k)}
    missing = sorted(set(expected) - given)
    unexpected = sorted(given - set(expected))
    misshaped = sorted(f"{k}: checkpoint {tuple(tensors[k].shape)}, model {expected[k][0]}"
                       for k in set(expected) & given
                       if tuple(tensors[k].shape) != tuple(expected[k][0]))
    if missing or unexpected or misshaped:
        def show(title, names):
            if not names:
                return ""
            more = f"\n    ... and {len(names) - 20} more" if len(names) > 20 else ""
            return f"\n  {title} ({len(names)}):\n    " + "\n    ".join(names[:20]) + more
        raise BackboneError(
            f"{source} does not match the CLIP architecture of its config"
            + show("missing tensors", missing) + show("unexpected tensors", unexpected)
            + show("mis-shaped tensors", misshaped))
    leaves: dict[tuple[str, ...], Any] = {}
    for name, (_, path, layer) in expected.items():
        x = _from_torch_layout(np.asarray(tensors[name], np.float32), path[-1])
        if layer is None:
            leaves[path] = x
        else:
            leaves.setdefault(path, {})[layer] = x
    params: dict = {}
    for path, x in leaves.items():
        if isinstance(x, dict):
            x = np.stack([x[i] for i in range(len(x))])
        node = params
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = x
    return jax.tree.map(jax.numpy.asarray, params)


# ---------------------------------------------------------------------------------------------
# files


def _read_weights(directory: str) -> tuple[dict[str, np.ndarray], str]:
    st = os.path.join(directory, "model.safetensors")
    index = os.path.join(directory, "model.safetensors.index.json")
    bin_ = os.path.join(directory, "pytorch_model.bin")
    if os.path.exists(st):
        return _read_safetensors([st]), st
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return _read_safetensors([os.path.join(directory, s) for s in shards]), index
    if os.path.exists(bin_):
        try:
            import torch
        except ImportError:
            raise BackboneError(
                f"{bin_} is a PyTorch pickle and torch is not installed; either "
                "`pip install torch` or convert it to model.safetensors") from None
        state = torch.load(bin_, map_location="cpu", weights_only=True)
        return {k: v.float().numpy() for k, v in state.items()}, bin_
    raise BackboneError(f"no weights in {directory}: looked for {', '.join(WEIGHT_FILES)}")


def _read_safetensors(files: list[str]) -> dict[str, np.ndarray]:
    from safetensors import safe_open
    tensors = {}
    for file in files:
        try:
            with safe_open(file, framework="flax") as f:  # flax reads bf16/fp16 too
                for k in f.keys():
                    tensors[k] = np.asarray(f.get_tensor(k), np.float32)
        except Exception as e:  # safetensors raises its own error types on corrupt headers
            raise BackboneError(f"cannot read {file}: {e}") from e
    return tensors


def _hub_reachable(timeout: float = 5.0) -> str | None:
    """None if the hub endpoint accepts a TCP connection, else a reason."""
    from huggingface_hub import constants
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return None
    except OSError as e:
        return f"cannot reach {host}:443 ({e})"


def resolve(path_or_hub_id: str) -> str:
    """A local checkpoint directory for an embedded name, a path or a hub id (downloaded to
    the HF cache)."""
    if path_or_hub_id in EMBEDDED:
        directory = EMBEDDED[path_or_hub_id]
        if not os.path.isfile(os.path.join(directory, "config.json")):
            raise BackboneError(f"the embedded checkpoint {path_or_hub_id!r} is missing from "
                                f"{directory}; reinstall the package, or regenerate it with "
                                "configs/pretrain_shapes.py (README)")
        return directory
    path = os.path.abspath(os.path.expanduser(path_or_hub_id))
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise BackboneError(f"{path} is a file; expected a directory holding config.json and "
                            f"one of {', '.join(WEIGHT_FILES)}")
    if not _HUB_ID.match(path_or_hub_id):
        raise BackboneError(f"no checkpoint directory at {path}")
    import huggingface_hub
    from huggingface_hub import constants
    where = (f"{path_or_hub_id!r} is not a local directory (looked at {path}) and could not be "
             "fetched as a Hugging Face hub id")
    # Without a network, answer from the local HF cache at once instead of retrying for minutes.
    reason = None if constants.HF_HUB_OFFLINE else _hub_reachable()
    try:
        return huggingface_hub.snapshot_download(
            path_or_hub_id, allow_patterns=_HUB_PATTERNS,
            local_files_only=constants.HF_HUB_OFFLINE or reason is not None)
    except Exception as e:  # cache miss, unknown or gated repo, network error
        detail = reason or f"{type(e).__name__}: {e}"
        raise BackboneError(f"{where}: {detail}. Offline, pass a local directory holding "
                            "config.json and model.safetensors.") from e


def _read_config(directory: str) -> dict:
    """A checkpoint directory's config.json, or a BackboneError saying what is wrong."""
    config_path = os.path.join(directory, "config.json")
    if not os.path.exists(config_path):
        raise BackboneError(f"no config.json in {directory}; a Hugging Face CLIP directory "
                            f"holds config.json and one of {', '.join(WEIGHT_FILES)}")
    try:
        with open(config_path) as f:
            hf_config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise BackboneError(f"{config_path} is not valid JSON: {e}") from None
    if not isinstance(hf_config, dict):
        raise BackboneError(f"{config_path} is not a CLIP config (a JSON object)")
    return hf_config


def load_pretrained(path_or_hub_id: str, dtype: str = "float32"):
    """(model, params) from a Hugging Face CLIP directory or hub id."""
    directory = resolve(path_or_hub_id)
    model = clip.CLIP(config_from_hf(_read_config(directory), dtype=dtype))
    check_preprocessor(directory, model.config.vision.image_size)
    tensors, source = _read_weights(directory)
    return model, params_from_hf(model, tensors, source=source)


def check_preprocessor(directory: str, image_size: int) -> None:
    """Refuse a `preprocessor_config.json` (Hugging Face's CLIPImageProcessor fields) that asks
    for other preprocessing than ours: CLIP's mean and std, shortest side resized to the tower's
    image size with bicubic resampling, a center crop of that size, pixels / 255. A checkpoint
    without the file gets CLIP's."""
    path = os.path.join(directory, "preprocessor_config.json")
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise BackboneError(f"cannot read {path}: {e}") from None
    if not isinstance(cfg, dict):
        raise BackboneError(f"{path} is not a CLIPImageProcessor config")

    def side(value, key):
        return value.get(key) if isinstance(value, dict) else value
    want = {"image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD)}
    wrong = [f"{k} {cfg[k]} (this pipeline: {v})" for k, v in want.items() if k in cfg and (
        not isinstance(cfg[k], list) or len(cfg[k]) != 3
        or max(abs(float(a) - b) for a, b in zip(cfg[k], v)) > 1e-6)]
    crop = cfg.get("crop_size")
    for key in ("height", "width") if isinstance(crop, dict) else ("",):
        value = side(crop, key) if key else crop
        if value is not None and value != image_size:
            wrong.append(f"crop_size {crop} (the vision tower takes {image_size})")
            break
    short = side(cfg.get("size"), "shortest_edge")
    if short is not None and short != image_size:
        wrong.append(f"size {cfg.get('size')} (this pipeline resizes the short side to "
                     f"{image_size})")
    for key, value in (("do_normalize", True), ("do_center_crop", True), ("do_resize", True),
                       ("do_rescale", True)):
        if cfg.get(key, value) is not value:
            wrong.append(f"{key}={cfg[key]}")
    if "rescale_factor" in cfg and abs(float(cfg["rescale_factor"]) - 1 / 255) > 1e-9:
        wrong.append(f"rescale_factor {cfg['rescale_factor']} (this pipeline: 1/255)")
    if wrong:
        raise BackboneError(f"{path} asks for preprocessing this pipeline does not do: "
                            f"{'; '.join(wrong)}. Use a checkpoint made for CLIP's "
                            "preprocessing, or fix the file if it was edited")


def save_pretrained(model: clip.CLIP, params, out_dir: str, tokenizer_dir: str | None = None):
    """Write config.json, model.safetensors and preprocessor_config.json (and copy the tokenizer
    files from `tokenizer_dir`): a directory `transformers.CLIPModel.from_pretrained` loads."""
    from safetensors.numpy import save_file
    os.makedirs(out_dir, exist_ok=True)
    cfg = model.config
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config_to_hf(cfg), f, indent=2)
    save_file(params_to_hf(params), os.path.join(out_dir, "model.safetensors"),
              metadata={"format": "pt"})
    size = cfg.vision.image_size
    with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "CLIPImageProcessor", "do_resize": True,
                   "size": {"shortest_edge": size}, "resample": 3, "do_center_crop": True,
                   "crop_size": {"height": size, "width": size}, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(CLIP_MEAN),
                   "image_std": list(CLIP_STD), "do_convert_rgb": True}, f, indent=2)
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            src = os.path.join(tokenizer_dir, name)
            if os.path.exists(src) and os.path.abspath(src) != os.path.abspath(
                    os.path.join(out_dir, name)):
                shutil.copy(src, out_dir)
    return out_dir


def load_architecture(path_or_hub_id: str, dtype: str = "float32") -> clip.CLIPConfig:
    """The CLIP architecture of a checkpoint from its config.json alone (no weights read);
    its preprocessor_config.json is checked too."""
    directory = resolve(path_or_hub_id)
    config = config_from_hf(_read_config(directory), dtype=dtype)
    check_preprocessor(directory, config.vision.image_size)
    return config


def architecture(arch: str, checkpoint: str, dtype: str = "float32") -> clip.CLIPConfig:
    """A preset by name when `arch` is set, else the checkpoint's own architecture."""
    if arch:
        return dataclasses.replace(clip.preset(arch).config, dtype=dtype)
    if not checkpoint:
        raise ValueError("set model.arch (a preset such as vit_b16) or model.checkpoint")
    return load_architecture(checkpoint, dtype)
