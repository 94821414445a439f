"""The towers' attention: heads-major equals jax's; the fused implementation is chosen only
where its probe passes, also while a step is being traced, and otherwise XLA runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaring_jax.models import attention


def _qkv(shape=(2, 7, 4, 8), dtype=jnp.float32, seed=3):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.standard_normal(shape), dtype) for _ in range(3))


@pytest.mark.parametrize("causal", [False, True])
def test_heads_major_is_jax_attention(causal):
    """The unrolled model's attention (model.fast_step) is jax's, up to float rounding."""
    q, k, v = _qkv()
    want = jax.nn.dot_product_attention(q, k, v, is_causal=causal)
    got = attention.heads_major(q, k, v, causal)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)


@pytest.mark.parametrize("heads_major", [False, True])
def test_off_gpu_attend_is_the_unfused_path_bit_for_bit(heads_major):
    q, k, v = _qkv(dtype=jnp.bfloat16)
    assert not attention._fused_wanted(q.dtype)  # the tests run on CPU
    want = (attention.heads_major(q, k, v, True) if heads_major
            else jax.nn.dot_product_attention(q, k, v, is_causal=True))
    np.testing.assert_array_equal(attention.attend(q, k, v, True, heads_major), want)


def test_a_refused_implementation_is_not_chosen():
    """cuDNN refuses a CPU: the probe says no instead of failing the run."""
    assert attention.fused_ok((9, 4, 8), "bfloat16", True, "cudnn") is False


def test_the_fused_path_is_taken_when_its_probe_passes_even_inside_a_trace(monkeypatch):
    """With the fused implementation played by XLA's (the only one a CPU has), `attend`
    probes it while `jax.jit` traces, takes it, and computes jax's attention."""
    monkeypatch.setattr(attention, "FUSED", "xla")
    monkeypatch.setattr(attention, "_fused_wanted", lambda dtype: True)
    monkeypatch.setattr(attention, "PROBED", {})
    q, k, v = _qkv((3, 9, 2, 8), jnp.bfloat16, seed=5)
    got = jax.jit(lambda q, k, v: attention.attend(q, k, v, False, True))(q, k, v)
    assert len(attention.PROBED) == 1  # probed once, during the trace
    assert attention.fused_ok((9, 2, 8), "bfloat16", False, "xla") is True
    np.testing.assert_array_equal(got, jax.nn.dot_product_attention(q, k, v))
    one = tuple(a[:, :1] for a in (q, k, v))  # e.g. the towers' parameter-init trace
    np.testing.assert_array_equal(attention.attend(*one, False, True),
                                  attention.heads_major(*one, False))
    assert len(attention.PROBED) == 1  # not probed


def test_fused_attention_is_wanted_on_a_gpu_in_half_precision_unless_turned_off(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert attention._fused_wanted(jnp.bfloat16) and attention._fused_wanted(jnp.float16)
    assert not attention._fused_wanted(jnp.float32)  # cuDNN's fused kernels: half only
    monkeypatch.setenv("ADARING_FUSED_ATTENTION", "0")
    assert not attention._fused_wanted(jnp.bfloat16)


def test_a_probe_that_disagrees_with_xla_is_refused(monkeypatch):
    """An implementation whose numbers are off is not taken (here: one that drops the mask)."""
    real = jax.nn.dot_product_attention

    def unmasked(*a, is_causal, implementation):
        return real(*a, is_causal=False if implementation == "wrong" else is_causal,
                    implementation=None if implementation == "wrong" else implementation)
    monkeypatch.setattr(jax.nn, "dot_product_attention", unmasked)
    monkeypatch.setattr(attention, "PROBED", {})
    assert attention.fused_ok((9, 4, 8), "bfloat16", True, "wrong") is False
