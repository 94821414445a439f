"""Flax CLIP towers, numerically faithful to OpenAI CLIP / Hugging Face `CLIPModel`.

Parameter names follow Hugging Face (`vision_model/encoder/layers/self_attn/q_proj/kernel`, ...),
except that each tower's transformer blocks are stacked over depth: every leaf under
`encoder/layers` has a leading axis of length `layers`, and the blocks run as a `jax.lax.scan`.
That keeps compile time flat in depth and lets a tower run any contiguous range of its layers,
which the trainer uses to compute the frozen text layers below the first adapted one only once.

Adapters: each tower takes an optional `LayerAdapters`, what any method materializes its
parameters into: weight updates (`Update`, dense or a low-rank chain) of the projections in
`SITES` (attention q, k, v, o; the MLP's fc1, fc2) of any blocks, a parallel branch
`Block_l(x) + scale * A_l(LN1_l(x))` with `A_l` a small MLP, and learned prompt context
vectors for the text tower. The towers know no method. With no adapters they are plain CLIP.

Public API:
    model = preset("ViT-B/16")                 # architecture only
    params = init_params(model, rng)           # random weights (HF initialization scheme)
    model, params = load_pretrained(path_or_hub_id)
    encode_image(model, params, pixels)        # (B, H, W, 3) CLIP-normalized -> (B, proj_dim)
    encode_text(model, params, input_ids)      # (B, L) int32 -> (B, proj_dim)
    logits(model, params, pixels, input_ids)   # (B_img, B_txt), scaled cosine similarities
    save_pretrained(model, params, out_dir)
    count_params(model)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from adaring_jax.models import attention

Array = jax.Array
Params = dict[str, Any]

# Architectures live in clip_config; re-exported here as part of this module's API.
from adaring_jax.models.clip_config import (ACTIVATIONS, ALIASES, PRESETS,  # noqa: E402,F401
                                            CLIPConfig, TextConfig, VisionConfig)


# ---------------------------------------------------------------------------------------------
# Adapters as the towers see them


# The projections of a block that take weight updates: attention q, k, v and out (Hugging Face
# q_proj, k_proj, v_proj, out_proj) and the MLP's two (fc1, fc2).
SITES = ("q", "k", "v", "o", "fc1", "fc2")


def site_shape(site: str, cfg) -> tuple[int, int]:
    """(in, out) of the projection `site` in a tower of config `cfg`."""
    if site not in SITES:
        raise ValueError(f"unknown update site {site!r}; valid: {', '.join(SITES)}")
    return {"fc1": (cfg.width, cfg.mlp_dim), "fc2": (cfg.mlp_dim, cfg.width)}.get(
        site, (cfg.width, cfg.width))


@struct.dataclass
class Update:
    """A weight update of one projection, stacked over the adapted layers: the projection of x
    becomes `x W + b + scale * dropout(x) @ factors[0] @ ... @ factors[-1]`. One factor
    (N, in, out) is a dense update, two (N, in, r), (N, r, out) a low-rank one (LoRA's B A),
    any chain whose inner widths match is taken."""
    factors: tuple[Array, ...]
    scale: float = struct.field(pytree_node=False, default=1.0)


def update_delta(update: Update, x: Array) -> Array:
    """One layer's `scale * x @ factors[0] @ ...` in x's dtype."""
    h = x
    for f in update.factors:
        h = h @ f.astype(x.dtype)
    return update.scale * h


@struct.dataclass
class LayerAdapters:
    """What a method gives one tower: per-layer weights stacked over the adapted layers.

    layers:  ascending 0-based block indices the weights below apply to (static).
    kernels, biases, scale: a parallel branch `Block_l(x) + scale * A_l(LN1_l(x))`, A_l the
             MLP `adapter_branch` of kernels[j] (N, in_j, out_j) with in_0 = out_last = width
             and biases[j] (N, out_j) or None; scale a scalar or (N,). () for no branch.
    updates: {site: Update} weight updates of the projections in SITES.
    dropout: dropout on the input of every update's path, training only (one mask per input
             tensor and layer: q, k and v share theirs); needs `key`.
    key:     a PRNG key for that dropout, or None (evaluation).
    context: text tower only: (n, width) learned token embeddings that replace those of prompt
             positions 1..n (after the start token), as CoOp's context vectors; None for none.
    A tower given no layers takes only the context.
    """
    kernels: tuple[Array, ...] = ()
    biases: tuple[Array | None, ...] = ()
    scale: Array | float = 1.0
    layers: tuple[int, ...] = struct.field(pytree_node=False, default=())
    updates: dict = struct.field(default_factory=dict)
    dropout: float = struct.field(pytree_node=False, default=0.0)
    key: Array | None = None
    context: Array | None = None


def adapter_branch(kernels: Sequence[Array], biases: Sequence[Array | None], u: Array) -> Array:
    """One layer's adapter MLP: dense layers with ReLU between them (not after the last)."""
    h = u
    for j, (w, b) in enumerate(zip(kernels, biases)):
        if j:
            h = jax.nn.relu(h)
        h = h @ w.astype(h.dtype)
        if b is not None:
            h = h + b.astype(h.dtype)
    return h


def _check_adapters(adapters: LayerAdapters, cfg, tower: str):
    layers, width, depth = adapters.layers, cfg.width, cfg.layers
    if adapters.context is not None:
        if tower != "text" or adapters.context.ndim != 2 or adapters.context.shape[1] != width:
            raise ValueError(f"{tower} context of shape {adapters.context.shape}: context "
                             f"vectors are (n, {width}) and for the text tower only")
    if not layers:
        if adapters.kernels or adapters.updates:
            raise ValueError(f"{tower} adapters carry weights but name no layers")
        return
    if list(layers) != sorted(set(layers)) or layers[0] < 0 or layers[-1] >= depth:
        raise ValueError(f"{tower} adapter layers {layers} must be ascending, unique and within "
                         f"0..{depth - 1}")
    n = len(layers)
    if len(adapters.kernels) != len(adapters.biases):
        raise ValueError(f"{tower} adapters: {len(adapters.kernels)} kernels but "
                         f"{len(adapters.biases)} biases")
    dims = [width]
    for j, w in enumerate(adapters.kernels):
        if w.ndim != 3 or w.shape[0] != n or w.shape[1] != dims[-1]:
            raise ValueError(f"{tower} adapter kernel {j} has shape {w.shape}; expected "
                             f"({n}, {dims[-1]}, out) for {n} adapted layers")
        dims.append(w.shape[2])
    if adapters.kernels and dims[-1] != width:
        raise ValueError(f"{tower} adapter output width {dims[-1]} != tower width {width}")
    for site, update in adapters.updates.items():
        fan_in, fan_out = site_shape(site, cfg)
        shapes = [tuple(f.shape) for f in update.factors]
        chain = [fan_in] + [s[2] for s in shapes]
        ok = shapes and all(len(s) == 3 and s[0] == n and s[1] == i
                            for s, i in zip(shapes, chain))
        if not ok or chain[-1] != fan_out:
            raise ValueError(f"{tower} update of {site} has factors {shapes}; expected a chain "
                             f"({n}, {fan_in}, r1), ({n}, r1, r2), ..., ({n}, ., {fan_out}) for "
                             f"{n} adapted layers")
    if adapters.dropout and not adapters.updates:
        raise ValueError(f"{tower} adapters set an update dropout but no updates")


# ---------------------------------------------------------------------------------------------
# Flax modules


def _normal(std: float):
    return nn.initializers.normal(stddev=std)


def _dropped(x: Array, rate: float, key: Array | None) -> Array:
    """Inverted dropout of x with `rate` when a key is given (training), else x."""
    if key is None or rate <= 0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


class _Updated:
    """The updates of one block (see `Update`). A dense update without dropout in a float32
    block is folded into its projection's kernel (`Projection`: one product x (W + dW), as
    in full fine-tuning, instead of x W + x dW: the same sum up to float rounding, half the
    forward products and one fewer in the backward pass); the rest are added to the
    projections' outputs. In bfloat16 the separate product keeps a small dW from being
    rounded into W."""

    def __init__(self, updates: dict, dropout: float, key: Array | None, dtype):
        fold = jnp.dtype(dtype) == jnp.float32 and (key is None or dropout <= 0)
        self.kernels = {s: u.scale * u.factors[0] for s, u in updates.items()
                        if fold and len(u.factors) == 1}
        self.updates = {s: u for s, u in updates.items() if s not in self.kernels}
        self.dropout, self.key = dropout, key

    def kernel(self, site: str) -> Array | None:
        """The update folded into `site`'s kernel, or None."""
        return self.kernels.get(site)

    def __call__(self, sites: tuple[str, ...], x: Array, outputs: tuple, salt: int):
        """`outputs` of the projections `sites`, all reading `x`, plus their unfolded
        updates; one dropout mask for x (`salt` tells the inputs of a block apart)."""
        if not any(s in self.updates for s in sites):
            return outputs
        key = self.key if self.key is None or salt == 0 else jax.random.fold_in(self.key, salt)
        xd = _dropped(x, self.dropout, key)
        return tuple(y + update_delta(self.updates[s], xd) if s in self.updates else y
                     for s, y in zip(sites, outputs))


class Projection(nn.Module):
    """`nn.Dense` with bias (the same parameters, initialization and product), whose kernel
    can take an update before the product: x (W + dW) + b."""
    features: int
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: Array, update: Array | None = None) -> Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features),
                            jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        if update is not None:
            kernel = kernel + update
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
        return y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))


class Attention(nn.Module):
    """Multi-head self-attention with Hugging Face's q/k/v/out projections (all with bias)."""
    width: int
    heads: int
    depth: int  # tower depth, for the initialization scale
    dtype: Any = jnp.float32
    heads_major: bool = False  # `attention.heads_major` off GPU (CLIPConfig.unrolled)

    @nn.compact
    def __call__(self, x: Array, causal: bool, updated: _Updated) -> Array:
        head_dim = self.width // self.heads
        in_std = self.width ** -0.5 * (2 * self.depth) ** -0.5
        split = lambda t: t.reshape(*t.shape[:-1], self.heads, head_dim)
        proj = lambda name, std: Projection(self.width, self.dtype, _normal(std),  # noqa: E731
                                            name=f"{name}_proj")
        q, k, v = (proj(n, in_std)(x, updated.kernel(n)) for n in "qkv")
        q, k, v = updated(("q", "k", "v"), x, (q, k, v), 0)
        q, k, v = split(q), split(k), split(v)
        # (B, T, heads, head_dim); scaled by head_dim**-0.5 as in CLIP.
        out = attention.attend(q, k, v, causal, self.heads_major)
        out = out.reshape(*out.shape[:-2], self.width)
        y = proj("out", self.width ** -0.5)(out, updated.kernel("o"))
        (y,) = updated(("o",), out, (y,), 1)
        return y


class MLP(nn.Module):
    width: int
    mlp_dim: int
    act: str
    depth: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, updated: _Updated) -> Array:
        h = Projection(self.mlp_dim, self.dtype, _normal((2 * self.width) ** -0.5),
                       name="fc1")(x, updated.kernel("fc1"))
        (h,) = updated(("fc1",), x, (h,), 2)
        h = ACTIVATIONS[self.act](h)
        in_std = self.width ** -0.5 * (2 * self.depth) ** -0.5
        y = Projection(self.width, self.dtype, _normal(in_std), name="fc2")(
            h, updated.kernel("fc2"))
        (y,) = updated(("fc2",), h, (y,), 3)
        return y


class ResidualBlock(nn.Module):
    """Pre-LN transformer block: x + attn(LN1 x), then + mlp(LN2 .); optional adapters: weight
    updates of its projections and a parallel branch reading LN1 x."""
    cfg: VisionConfig | TextConfig
    causal: bool
    dtype: Any = jnp.float32
    dropout: float = 0.0  # the tower's update dropout (static)
    heads_major: bool = False

    @nn.compact
    def __call__(self, x: Array, adapter: tuple | None = None) -> Array:
        c = self.cfg
        ln = lambda name: nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype, name=name)
        u = ln("layer_norm1")(x)
        kernels, biases, scale, updates, key = adapter if adapter is not None else ((),) * 5
        updated = _Updated(updates or {}, self.dropout, key, self.dtype)
        y = x + Attention(c.width, c.heads, c.layers, self.dtype, self.heads_major,
                          name="self_attn")(u, self.causal, updated)
        y = y + MLP(c.width, c.mlp_dim, c.act, c.layers, self.dtype, name="mlp")(
            ln("layer_norm2")(y), updated)
        if kernels:
            y = y + (scale * adapter_branch(kernels, biases, u)).astype(y.dtype)
        return y


class Encoder(nn.Module):
    """A tower's `cfg.layers` residual blocks, their parameters stacked over depth."""
    cfg: VisionConfig | TextConfig
    causal: bool
    dtype: Any = jnp.float32
    remat: bool = False  # recompute block activations in the backward pass
    unrolled: bool = False  # CLIPConfig.unrolled

    @nn.compact
    def __call__(self, x: Array, adapters: LayerAdapters | None = None, start: int = 0,
                 stop: int | None = None) -> Array:
        block = ResidualBlock(self.cfg, self.causal, self.dtype,
                              getattr(adapters, "dropout", 0.0), self.unrolled, parent=None)
        depth = self.cfg.layers
        if self.has_variable("params", "layers"):
            # Given weights are read as they are: Flax's `param` would trace the stacked init
            # below (every block's initializers) on each call only to compare shapes, a
            # quarter of a ViT-B/16 train step's tracing. The weights' shapes are checked
            # when they are loaded (`convert`) and by the products that read them.
            stacked = self.get_variable("params", "layers")
        else:
            stacked = self.param(
                "layers",
                lambda rng: jax.vmap(lambda r: block.init(r, x[:1, :1])["params"])(
                    jax.random.split(rng, depth)))
        stop = depth if stop is None else stop
        sliced = jax.tree.map(lambda p: p[start:stop], stacked)
        per_layer = None if adapters is None or not adapters.layers else _spread(adapters, start,
                                                                                stop)

        apply = lambda p, h, a: block.apply({"params": p}, h, a)  # noqa: E731
        if self.remat:
            apply = jax.checkpoint(apply)

        def body(h, xs):
            p, a = xs
            return apply(p, h, a), None

        # One scan over the whole range, adapted or not: in layers without an adapter the
        # branch has zero weights and zero scale. Splitting the range into separate scans
        # would let XLA compile a piece differently from the plain tower, and a
        # zero-initialized adapter would then move the features by float rounding (3.6e-7
        # measured). Training, which needs no such exactness, starts its adapted pass at the
        # first adapted block instead (`objective.loss_fn`), so no adapter arithmetic runs
        # below it there.
        x, _ = jax.lax.scan(body, x, (sliced, per_layer), unroll=self.unrolled)
        return x


def _spread(adapters: LayerAdapters, start: int, stop: int):
    """Adapter weights for every layer in [start, stop): the adapted layers' own, zeros (and
    scale 0) elsewhere. Returns (kernels, biases, scale, updates, dropout keys), each with
    leading axis stop - start."""
    n = len(adapters.layers)
    slot = {l: j for j, l in enumerate(adapters.layers)}
    slots = [slot.get(l, n) for l in range(start, stop)]
    if slots and n not in slots and slots == list(range(slots[0], slots[0] + len(slots))):
        # Every layer in range adapted (training's adapted pass): a static slice. The same
        # values as the gather below, whose gradient would scatter into a padded copy of
        # every stacked weight (ViT-B/16's dense updates: 12 x 768 x 3072 per MLP site).
        pad = lambda w: w[slots[0]:slots[0] + len(slots)]  # noqa: E731
    else:
        idx = jnp.asarray(slots, jnp.int32)
        pad = lambda w: jnp.concatenate([w, jnp.zeros((1, *w.shape[1:]), w.dtype)])[idx]  # noqa: E731
    scale = jnp.broadcast_to(jnp.asarray(adapters.scale, jnp.float32), (n,))
    keys = None
    if adapters.updates and adapters.key is not None:
        keys = jax.random.split(adapters.key, stop - start)
    return (tuple(pad(k) for k in adapters.kernels),
            tuple(None if b is None else pad(b) for b in adapters.biases),
            pad(scale), jax.tree.map(pad, adapters.updates), keys)


class VisionEmbeddings(nn.Module):
    """Bias-free patch conv, class token and learned positions."""
    cfg: VisionConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, pixels: Array) -> Array:
        c = self.cfg
        x = nn.Conv(c.width, (c.patch_size, c.patch_size), strides=(c.patch_size, c.patch_size),
                    padding="VALID", use_bias=False, dtype=self.dtype, kernel_init=_normal(0.02),
                    name="patch_embedding")(pixels.astype(self.dtype))
        x = x.reshape(x.shape[0], -1, c.width)
        cls = self.param("class_embedding", _normal(c.width ** -0.5), (c.width,))
        cls = jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, c.width))
        positions = nn.Embed(c.num_patches + 1, c.width, embedding_init=_normal(0.02),
                             name="position_embedding").embedding
        return jnp.concatenate([cls, x], axis=1) + positions.astype(x.dtype)


class VisionTower(nn.Module):
    """ViT: embeddings, pre-LN, residual blocks, post-LN on the class token."""
    cfg: VisionConfig
    dtype: Any = jnp.float32
    remat: bool = False
    unrolled: bool = False

    def setup(self):
        c = self.cfg
        self.embeddings = VisionEmbeddings(c, self.dtype)
        self.pre_layrnorm = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype)
        self.encoder = Encoder(c, causal=False, dtype=self.dtype, remat=self.remat,
                               unrolled=self.unrolled)
        self.post_layernorm = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype)

    def embed(self, pixels: Array) -> Array:
        c = self.cfg
        if pixels.shape[1:] != (c.image_size, c.image_size, c.num_channels):
            raise ValueError(f"pixels have shape {pixels.shape}; this model takes "
                             f"(batch, {c.image_size}, {c.image_size}, {c.num_channels}) NHWC")
        return self.pre_layrnorm(self.embeddings(pixels))

    def pool(self, h: Array) -> Array:
        return self.post_layernorm(h[:, 0])

    def __call__(self, pixels, adapters=None, start=0, stop=None):
        return self.pool(self.encoder(self.embed(pixels), adapters, start, stop))


def eos_positions(input_ids: Array, eos_token_id: int) -> Array:
    """Hugging Face CLIP pooling positions: argmax(ids) when eos_token_id == 2 (legacy OpenAI
    configs, where the end-of-text id is the largest), else the first position holding eos."""
    if eos_token_id == 2:
        return jnp.argmax(input_ids, axis=-1)
    return jnp.argmax(input_ids == eos_token_id, axis=-1)


class TextEmbeddings(nn.Module):
    """Token plus learned position embeddings."""
    cfg: TextConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids: Array, context: Array | None = None) -> Array:
        c = self.cfg
        length = input_ids.shape[-1]
        if length > c.context_length:
            raise ValueError(f"input_ids have length {length} > context length "
                             f"{c.context_length}")
        tokens = nn.Embed(c.vocab_size, c.width, embedding_init=_normal(0.02),
                          name="token_embedding")(input_ids)
        if context is not None:  # CoOp: learned vectors at positions 1..n
            n = context.shape[0]
            tokens = tokens.at[:, 1:1 + n].set(
                jnp.broadcast_to(context.astype(tokens.dtype), (tokens.shape[0], n, c.width)))
        positions = nn.Embed(c.context_length, c.width, embedding_init=_normal(0.02),
                             name="position_embedding").embedding[:length]
        return (tokens + positions).astype(self.dtype)


class TextTower(nn.Module):
    """Causal text transformer: embeddings, blocks, final LN, end-of-text pooling."""
    cfg: TextConfig
    dtype: Any = jnp.float32
    remat: bool = False
    unrolled: bool = False

    def setup(self):
        c = self.cfg
        self.embeddings = TextEmbeddings(c, self.dtype)
        self.encoder = Encoder(c, causal=True, dtype=self.dtype, remat=self.remat,
                               unrolled=self.unrolled)
        self.final_layer_norm = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype)

    def embed(self, input_ids: Array, context: Array | None = None) -> Array:
        return self.embeddings(input_ids, context)

    def pool(self, h: Array, input_ids: Array) -> Array:
        h = self.final_layer_norm(h)
        idx = eos_positions(input_ids, self.cfg.eos_token_id)
        return jnp.take_along_axis(h, idx[:, None, None], axis=1)[:, 0]

    def __call__(self, input_ids, adapters=None, start=0, stop=None):
        context = None if adapters is None else adapters.context
        h = self.encoder(self.embed(input_ids, context), adapters, start, stop)
        return self.pool(h, input_ids)


class CLIP(nn.Module):
    """Both towers, their bias-free projections and the learned logit scale."""
    config: CLIPConfig

    def setup(self):
        c = self.config
        dtype = jnp.dtype(c.dtype)
        self.vision_model = VisionTower(c.vision, dtype, c.remat, c.unrolled)
        self.text_model = TextTower(c.text, dtype, c.remat, c.unrolled)
        self.visual_projection = nn.Dense(c.projection_dim, use_bias=False, dtype=dtype,
                                          kernel_init=_normal(c.vision.width ** -0.5))
        self.text_projection = nn.Dense(c.projection_dim, use_bias=False, dtype=dtype,
                                        kernel_init=_normal(c.text.width ** -0.5))
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(c.logit_scale_init),
                                      ())

    # Pieces of the vision tower, for callers that share the frozen bottom layers of a batch
    # between an adapted and a frozen pass.
    def image_hidden(self, pixels, stop: int):
        """Hidden states after vision layers [0, stop) with no adapters."""
        return self.vision_model.encoder(self.vision_model.embed(pixels), None, 0, stop)

    def image_from_hidden(self, hidden, start: int, adapters: LayerAdapters | None = None):
        """Finish the vision tower from layer `start` on hidden states from `image_hidden`."""
        if adapters is not None:
            _check_adapters(adapters, self.config.vision, "vision")
        h = self.vision_model.encoder(hidden, adapters, start, None)
        return self.visual_projection(self.vision_model.pool(h))

    def encode_image(self, pixels, adapters: LayerAdapters | None = None):
        if adapters is not None:
            _check_adapters(adapters, self.config.vision, "vision")
        return self.visual_projection(self.vision_model(pixels, adapters))

    def encode_text(self, input_ids, adapters: LayerAdapters | None = None):
        if adapters is not None:
            _check_adapters(adapters, self.config.text, "text")
        return self.text_projection(self.text_model(input_ids, adapters))

    # Pieces of the text tower, for callers that cache the frozen bottom layers of fixed prompts.
    def text_hidden(self, input_ids, stop: int):
        """Hidden states after text layers [0, stop) with no adapters."""
        return self.text_model.encoder(self.text_model.embed(input_ids), None, 0, stop)

    def text_from_hidden(self, hidden, input_ids, start: int,
                         adapters: LayerAdapters | None = None):
        """Finish the text tower from layer `start` on hidden states from `text_hidden`."""
        if adapters is not None:
            _check_adapters(adapters, self.config.text, "text")
            if adapters.context is not None:
                raise ValueError("context vectors change the text tower's input: encode the "
                                 "prompts with encode_text, not from cached hidden states")
        h = self.text_model.encoder(hidden, adapters, start, None)
        return self.text_projection(self.text_model.pool(h, input_ids))

    def __call__(self, pixels, input_ids, vision_adapters=None, text_adapters=None):
        img = self.encode_image(pixels, vision_adapters)
        txt = self.encode_text(input_ids, text_adapters)
        return scaled_cosine(img, txt, self.logit_scale)


# ---------------------------------------------------------------------------------------------
# Functional API


def normalize(x: Array) -> Array:
    """Unit L2 norm over the last axis, in float32."""
    x = x.astype(jnp.float32)
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def scaled_cosine(image_features: Array, text_features: Array, logit_scale: Array) -> Array:
    """exp(logit_scale) * cos(image, text): (B_img, D) x (B_txt, D) -> (B_img, B_txt), float32.
    The one place CLIP's logits are formed (HF `logits_per_image`, training, predictions);
    accuracy ranks by the unscaled cosine instead (`job/evaluate.py`: the argmax is the same)."""
    return jnp.exp(logit_scale) * normalize(image_features) @ normalize(text_features).T


def preset(name: str, **overrides) -> CLIP:
    """An architecture by name ("ViT-B/16", or an alias like "vit_b16"); no weights."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise ValueError(f"unknown CLIP architecture {name!r}; valid: "
                         f"{sorted(PRESETS)} (aliases: {sorted(ALIASES)})")
    return CLIP(dataclasses.replace(PRESETS[key], **overrides))


def _dummy_inputs(model: CLIP):
    v, t = model.config.vision, model.config.text
    return (jnp.zeros((1, v.image_size, v.image_size, v.num_channels), jnp.float32),
            jnp.zeros((1, t.context_length), jnp.int32))


@functools.partial(jax.jit, static_argnums=0)
def init_params(model: CLIP, rng: Array) -> Params:
    """Random parameters with Hugging Face's CLIP initialization scales."""
    return model.init(rng, *_dummy_inputs(model))["params"]


def param_shapes(model: CLIP) -> Params:
    """The parameter tree as `jax.ShapeDtypeStruct`s; allocates nothing."""
    return jax.eval_shape(lambda rng: init_params(model, rng), jax.random.key(0))


def count_params(model: CLIP) -> int:
    """Number of parameters, from shapes alone."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(param_shapes(model)))


@functools.partial(jax.jit, static_argnums=0)
def encode_image(model: CLIP, params: Params, pixels: Array,
                 adapters: LayerAdapters | None = None) -> Array:
    """CLIP-normalized NHWC pixels -> projected image features (not L2-normalized)."""
    return model.apply({"params": params}, pixels, adapters, method=CLIP.encode_image)


@functools.partial(jax.jit, static_argnums=0)
def encode_text(model: CLIP, params: Params, input_ids: Array,
                adapters: LayerAdapters | None = None) -> Array:
    """Token ids (B, L) -> projected text features at the end-of-text position."""
    return model.apply({"params": params}, jnp.asarray(input_ids, jnp.int32), adapters,
                       method=CLIP.encode_text)


@functools.partial(jax.jit, static_argnums=0)
def logits(model: CLIP, params: Params, pixels: Array, input_ids: Array) -> Array:
    """Hugging Face's `logits_per_image`."""
    return model.apply({"params": params}, pixels, jnp.asarray(input_ids, jnp.int32))

