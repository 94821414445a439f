"""Softmax self-attention of (B, T, heads, head_dim) arrays for the CLIP towers.

Three implementations of one formula (logits scaled by head_dim**-0.5, f32 softmax, optional
causal mask), which differ in the last bits only:
- cuDNN's fused (flash) attention, where the backend is a GPU, the compute dtype bfloat16 or
  float16, and cuDNN takes the shapes: a fused kernel for the forward and one for the backward
  pass instead of XLA's logits, softmax and products. Whether cuDNN takes a shape is asked of
  cuDNN itself, once per process and shape (`fused_ok`): a small forward and backward pass is
  compiled, run, and compared with XLA's; anything else falls back to XLA, and
  `ADARING_FUSED_ATTENTION=0` turns it off.
- `heads_major`, for the unrolled train step (CLIPConfig.unrolled): XLA's CPU dot then needs
  no transposed copy of the probabilities.
- `jax.nn.dot_product_attention` (XLA), everywhere else.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

FUSED = "cudnn"  # jax.nn.dot_product_attention's fused implementation
FUSED_DTYPES = ("bfloat16", "float16")  # what it takes
_PROBE_BATCH = 2  # cuDNN's support does not depend on the batch; the probe stays small
# Fewer tokens than this stay with XLA: nothing to fuse, and `Encoder`'s one-token trace of
# its parameter initialization (under jax.vmap) then never meets the fused kernel.
MIN_FUSED_TOKENS = 8
# fused_ok's answers: ((T, heads, head_dim), dtype name, causal, implementation) -> ok
PROBED: dict[tuple, bool] = {}


def heads_major(q: Array, k: Array, v: Array, causal: bool) -> Array:
    """Attention as `jax.nn.dot_product_attention` computes it (f32 logits, masked with a
    large negative number, f32 softmax), but with the values multiplied heads-major: (B,
    heads, T, S) @ (B, heads, S, head_dim). XLA's CPU dot then needs no transposed copy of
    the probabilities. The result differs from jax's in the last bits: a dot's rounding
    follows its shapes and layouts."""
    logits = jnp.einsum("BTNH,BSNH->BNTS", q, k, preferred_element_type=jnp.float32)
    logits = logits * jnp.asarray(q.shape[-1] ** -0.5, logits.dtype)
    if causal:
        t, s = logits.shape[-2:]
        big = jnp.asarray(-0.7 * float(jnp.finfo(logits.dtype).max), logits.dtype)
        logits = jnp.where(jnp.tril(jnp.ones((t, s), bool)), logits, big)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.swapaxes(probs @ jnp.swapaxes(v, 1, 2), 1, 2)


def _fused_wanted(dtype) -> bool:
    return (os.environ.get("ADARING_FUSED_ATTENTION", "1") != "0"
            and jax.default_backend() == "gpu" and jnp.dtype(dtype).name in FUSED_DTYPES)


def _forward_backward(implementation: str | None, causal: bool):
    """(q, k, v, cotangent) -> (out, dq, dk, dv) of one attention implementation."""
    def run(q, k, v, cotangent):
        out, vjp = jax.vjp(lambda *a: jax.nn.dot_product_attention(
            *a, is_causal=causal, implementation=implementation), q, k, v)
        return (out, *vjp(cotangent))
    return jax.jit(run)


def fused_ok(shape: tuple, dtype_name: str, causal: bool, implementation: str) -> bool:
    """Whether `implementation` computes attention of (T, heads, head_dim) `shape` in
    `dtype_name` here: its forward and backward pass compile, run, and agree with XLA's
    float32 ones within the dtype's rounding. Asked once per process and shape (the batch
    does not enter)."""
    key = (shape, dtype_name, causal, implementation)
    if key in PROBED:
        return PROBED[key]
    probe = (_PROBE_BATCH, *shape)
    rng = np.random.default_rng(0)
    q, k, v, cot = (rng.standard_normal(probe).astype(np.float32) for _ in range(4))
    try:
        with jax.ensure_compile_time_eval():  # run now, also while a step is being traced
            got = _forward_backward(implementation, causal)(
                *(jnp.asarray(a, dtype_name) for a in (q, k, v, cot)))
            want = _forward_backward("xla", causal)(q, k, v, cot)
            got = [np.asarray(g, np.float32) for g in got]
            want = [np.asarray(w) for w in want]
    except Exception:  # noqa: BLE001 - any refusal or failure means: not here, use XLA
        ok = False
    else:
        tolerance = 0.05 * max(1.0, max(float(np.abs(w).max()) for w in want))
        ok = all(g.shape == w.shape and np.isfinite(g).all()
                 and float(np.abs(g - w).max()) <= tolerance for g, w in zip(got, want))
    PROBED[key] = ok
    return ok


def attend(q: Array, k: Array, v: Array, causal: bool, heads_major_layout: bool) -> Array:
    """Attention of (B, T, heads, head_dim) q, k, v with the fastest implementation that
    this backend, dtype and shape allow (module docstring)."""
    fused = (q.shape == k.shape and q.shape[1] >= MIN_FUSED_TOKENS and _fused_wanted(q.dtype)
             and fused_ok(tuple(q.shape[1:]), jnp.dtype(q.dtype).name, causal, FUSED))
    if fused:
        return jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation=FUSED)
    if heads_major_layout:
        return heads_major(q, k, v, causal)
    return jax.nn.dot_product_attention(q, k, v, is_causal=causal)
