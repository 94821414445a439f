"""An independent NumPy CLIP with adapters that reads only the files `adaring_jax.export`
writes (HF config.json + model.safetensors, adapters.safetensors + adapter_config.json): what a
PyTorch user re-implementing our export would compute. float64 throughout."""

from __future__ import annotations

import json
import math
import os

import numpy as np
from safetensors.numpy import load_file

_erf = np.vectorize(math.erf)
ACTIVATIONS = {"quick_gelu": lambda x: x / (1 + np.exp(-1.702 * x)),
               "gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))}


def _layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class NumpyCLIP:
    def __init__(self, directory: str):
        with open(os.path.join(directory, "config.json")) as f:
            self.config = json.load(f)
        with open(os.path.join(directory, "adapter_config.json")) as f:
            self.adapter_config = json.load(f)
        load = lambda name: {k: v.astype(np.float64)  # noqa: E731
                             for k, v in load_file(os.path.join(directory, name)).items()}
        self.w = load("model.safetensors")
        self.a = load("adapters.safetensors")

    def _linear(self, x, name, bias=True, delta=None):
        w = self.w[name + ".weight"] if delta is None else self.w[name + ".weight"] + delta
        y = x @ w.T
        return y + self.w[name + ".bias"] if bias else y

    def _delta(self, tower, layer, module):
        """The exported weight update of `module` in this layer, or None."""
        for site, name in self.adapter_config.get("updates", {}).items():
            if name == module and layer in self.adapter_config["layers"]:
                return self.a[f"{tower}.{layer}.{site}.delta"]
        return None

    def _block(self, x, prefix, cfg, causal, tower, layer):
        eps = cfg["layer_norm_eps"]
        p = f"{prefix}.encoder.layers.{layer}"
        u = _layer_norm(x, self.w[p + ".layer_norm1.weight"], self.w[p + ".layer_norm1.bias"], eps)
        b, t, d = u.shape
        heads = cfg["num_attention_heads"]
        split = lambda z: z.reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)  # noqa: E731
        lin = lambda z, m: self._linear(z, f"{p}.{m}",  # noqa: E731
                                        delta=self._delta(tower, layer, m))
        q, k, v = (split(lin(u, f"self_attn.{n}_proj")) for n in "qkv")
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // heads)
        if causal:
            scores = scores + np.triu(np.full((t, t), -np.inf), 1)
        att = (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
        y = x + lin(att, "self_attn.out_proj")
        h = _layer_norm(y, self.w[p + ".layer_norm2.weight"], self.w[p + ".layer_norm2.bias"], eps)
        h = ACTIVATIONS[cfg["hidden_act"]](lin(h, "mlp.fc1"))
        y = y + lin(h, "mlp.fc2")
        if layer in self.adapter_config["layers"] and "alpha" in self.adapter_config:
            a = lambda n, z: z @ self.a[f"{tower}.{layer}.{n}.weight"].T \
                + self.a[f"{tower}.{layer}.{n}.bias"]  # noqa: E731
            relu = lambda z: np.maximum(z, 0)  # noqa: E731
            y = y + self.adapter_config["alpha"] * a("up", relu(a("shared", relu(a("down", u)))))
        return y

    def image_features(self, pixels: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) normalized pixels -> (B, projection_dim)."""
        cfg = self.config["vision_config"]
        ps = cfg["patch_size"]
        x = np.asarray(pixels, np.float64)
        b, hh, ww, c = x.shape
        patches = x.reshape(b, hh // ps, ps, ww // ps, ps, c).transpose(0, 1, 3, 5, 2, 4)
        patches = patches.reshape(b, -1, c * ps * ps)
        kernel = self.w["vision_model.embeddings.patch_embedding.weight"].reshape(
            -1, c * ps * ps)
        x = patches @ kernel.T
        cls = np.broadcast_to(self.w["vision_model.embeddings.class_embedding"],
                              (b, 1, x.shape[-1]))
        x = np.concatenate([cls, x], 1) + self.w["vision_model.embeddings.position_embedding.weight"]
        eps = cfg["layer_norm_eps"]
        x = _layer_norm(x, self.w["vision_model.pre_layrnorm.weight"],
                        self.w["vision_model.pre_layrnorm.bias"], eps)
        for layer in range(cfg["num_hidden_layers"]):
            x = self._block(x, "vision_model", cfg, False, "vision", layer)
        pooled = _layer_norm(x[:, 0], self.w["vision_model.post_layernorm.weight"],
                             self.w["vision_model.post_layernorm.bias"], eps)
        return pooled @ self.w["visual_projection.weight"].T

    def text_features(self, ids: np.ndarray) -> np.ndarray:
        """(B, L) token ids -> (B, projection_dim); pooled at the end-of-text token."""
        cfg = self.config["text_config"]
        ids = np.asarray(ids)
        x = self.w["text_model.embeddings.token_embedding.weight"][ids]
        x = x + self.w["text_model.embeddings.position_embedding.weight"][:ids.shape[1]]
        for layer in range(cfg["num_hidden_layers"]):
            x = self._block(x, "text_model", cfg, True, "text", layer)
        x = _layer_norm(x, self.w["text_model.final_layer_norm.weight"],
                        self.w["text_model.final_layer_norm.bias"], cfg["layer_norm_eps"])
        eos = cfg.get("eos_token_id", 2)
        pos = ids.argmax(-1) if eos == 2 else (ids == eos).argmax(-1)
        return x[np.arange(len(ids)), pos] @ self.w["text_projection.weight"].T
