"""CLIP towers: parity with the PyTorch reference, parameter counts, adapter placement."""

import dataclasses
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaring_jax.models import clip, convert
from conftest import FIXTURES

PARITY = ["clip_quickgelu_eos2", "clip_gelu_eos5"]


@pytest.mark.parametrize("name", PARITY)
def test_parity_with_transformers(name):
    model, params = convert.load_pretrained(os.path.join(FIXTURES, name))
    ref = np.load(os.path.join(FIXTURES, name, "outputs.npz"))
    img = clip.encode_image(model, params, ref["pixels"])
    txt = clip.encode_text(model, params, ref["input_ids"])
    logits = clip.logits(model, params, ref["pixels"], ref["input_ids"])
    np.testing.assert_allclose(img, ref["image_embeds"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(txt, ref["text_embeds"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(logits, ref["logits_per_image"], atol=1e-5, rtol=0)


def test_fixtures_cover_both_activations_sizes_and_pooling_rules():
    a, _ = convert.load_pretrained(os.path.join(FIXTURES, PARITY[0]))
    b, _ = convert.load_pretrained(os.path.join(FIXTURES, PARITY[1]))
    assert (a.config.vision.act, b.config.vision.act) == ("quick_gelu", "gelu")
    assert a.config.vision.image_size != b.config.vision.image_size
    assert a.config.vision.patch_size != b.config.vision.patch_size
    assert a.config.text.eos_token_id == 2 and b.config.text.eos_token_id == 5


def test_eos_pooling_rules():
    ids = jnp.array([[1, 9, 5, 7, 5], [1, 5, 8, 3, 3]])
    np.testing.assert_array_equal(clip.eos_positions(ids, 5), [2, 1])  # first eos
    np.testing.assert_array_equal(clip.eos_positions(ids, 2), [1, 2])  # legacy: argmax


@pytest.mark.parametrize("name,count", [("ViT-B/32", 151_277_313), ("ViT-B/16", 149_620_737),
                                        ("ViT-L/14", 427_616_513), ("vit_b16", 149_620_737)])
def test_param_counts_match_hugging_face(name, count):
    assert clip.count_params(clip.preset(name)) == count


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown CLIP architecture 'ViT-H/14'.*ViT-B/16"):
        clip.preset("ViT-H/14")


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="activation 'swish'.*quick_gelu"):
        clip.preset("tiny", vision=clip.VisionConfig(32, 8, 32, 2, 2, 64, act="swish"))
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        clip.preset("tiny", vision=clip.VisionConfig(30, 8, 32, 2, 2, 64))


@pytest.fixture(scope="module")
def tiny():
    model = clip.preset("tiny")
    params = clip.init_params(model, jax.random.key(0))
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    ids = np.zeros((3, 16), np.int32)
    ids[:, 0] = 998
    ids[:, 1:5] = rng.integers(0, 900, (3, 4))
    ids[:, 5] = 999
    return model, params, pixels, ids


def _random_adapters(rng, layers, width, hidden=8, scale=0.5):
    n = len(layers)
    k = jax.random.split(rng, 6)
    shapes = [(n, width, hidden), (n, hidden, hidden), (n, hidden, width)]
    kernels = tuple(0.3 * jax.random.normal(k[i], s) for i, s in enumerate(shapes))
    biases = tuple(0.1 * jax.random.normal(k[3 + i], (n, s[-1])) for i, s in enumerate(shapes))
    return clip.LayerAdapters(kernels, biases, scale, layers=tuple(layers))


def test_unrolled_model_has_the_same_parameters_and_features(tiny):
    model, params, pixels, ids = tiny
    unrolled = clip.CLIP(dataclasses.replace(model.config, unrolled=True))
    assert (jax.tree.map(jnp.shape, clip.init_params(unrolled, jax.random.key(0)))
            == jax.tree.map(jnp.shape, params))
    np.testing.assert_allclose(clip.encode_image(unrolled, params, pixels),
                               clip.encode_image(model, params, pixels), atol=2e-6, rtol=0)
    np.testing.assert_allclose(clip.encode_text(unrolled, params, ids),
                               clip.encode_text(model, params, ids), atol=2e-6, rtol=0)


def test_zero_adapters_are_plain_clip(tiny):
    model, params, pixels, ids = tiny
    a = _random_adapters(jax.random.key(1), (1, 2, 3), 32)
    zero = clip.LayerAdapters(a.kernels[:2] + (jnp.zeros_like(a.kernels[2]),),
                              a.biases[:2] + (jnp.zeros_like(a.biases[2]),), 1.0, layers=a.layers)
    np.testing.assert_allclose(clip.encode_image(model, params, pixels, zero),
                               clip.encode_image(model, params, pixels), atol=1e-6)
    np.testing.assert_allclose(clip.encode_text(model, params, ids, zero),
                               clip.encode_text(model, params, ids), atol=1e-6)
    assert not np.allclose(clip.encode_text(model, params, ids, a),
                           clip.encode_text(model, params, ids))


def test_adapter_branch_reads_ln1_and_adds_to_block_output(tiny):
    """Adapt layer k only; rebuild the tower by hand from layer ranges and check equality."""
    model, params, pixels, _ = tiny
    k = 2
    a = _random_adapters(jax.random.key(2), (k,), 32, scale=0.7)
    got = clip.encode_image(model, params, pixels, a)

    vp = params["vision_model"]
    enc = clip.Encoder(model.config.vision, causal=False)
    run = lambda h, start, stop: enc.apply({"params": vp["encoder"]}, h, None, start, stop)
    h = model.apply({"params": params}, pixels, method=lambda m, x: m.vision_model.embed(x))
    h = run(h, 0, k)
    ln1 = jax.tree.map(lambda p: p[k], vp["encoder"]["layers"]["layer_norm1"])
    u = nn.LayerNorm(epsilon=1e-5).apply({"params": ln1}, h)
    branch = clip.adapter_branch([w[0] for w in a.kernels], [b[0] for b in a.biases], u)
    h = run(h, k, k + 1) + 0.7 * branch
    h = run(h, k + 1, 4)
    want = model.apply({"params": params}, h, method=lambda m, x: m.visual_projection(
        m.vision_model.pool(x)))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_non_contiguous_adapted_layers_and_jit(tiny):
    model, params, pixels, ids = tiny
    a = _random_adapters(jax.random.key(3), (0, 2), 32)
    f = jax.jit(lambda p, ad: clip.encode_text(model, p, ids, ad))
    np.testing.assert_allclose(f(params, a), clip.encode_text(model, params, ids, a), atol=1e-6)
    # Gradients flow to the adapter weights only through the layers that use them.
    g = jax.grad(lambda ad: clip.encode_text(model, params, ids, ad).sum())(a)
    assert all(float(jnp.abs(w).sum()) > 0 for w in g.kernels)


def test_text_tower_resumes_from_cached_hidden_states(tiny):
    model, params, _, ids = tiny
    a = _random_adapters(jax.random.key(4), (2, 3), 32)
    hidden = model.apply({"params": params}, ids, 2, method=clip.CLIP.text_hidden)
    resumed = model.apply({"params": params}, hidden, ids, 2, a,
                          method=clip.CLIP.text_from_hidden)
    np.testing.assert_allclose(resumed, clip.encode_text(model, params, ids, a), atol=1e-6)


def test_bad_adapters_are_rejected(tiny):
    model, params, pixels, _ = tiny
    with pytest.raises(ValueError, match="within 0..3"):
        clip.encode_image(model, params, pixels, _random_adapters(jax.random.key(5), (2, 4), 32))
    with pytest.raises(ValueError, match=r"expected \(2, 32, out\)"):
        clip.encode_image(model, params, pixels, _random_adapters(jax.random.key(5), (1, 2), 16))


def test_wrong_pixel_shape_is_explained(tiny):
    model, params, _, _ = tiny
    with pytest.raises(ValueError, match=r"\(batch, 32, 32, 3\) NHWC"):
        clip.encode_image(model, params, jnp.zeros((1, 3, 32, 32)))


def test_bfloat16_compute_keeps_float32_params():
    model = clip.preset("tiny", dtype="bfloat16")
    params = clip.init_params(model, jax.random.key(0))
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    ref = clip.preset("tiny")
    pixels = jnp.ones((1, 32, 32, 3))
    lo, hi = clip.encode_image(model, params, pixels), clip.encode_image(ref, params, pixels)
    assert lo.dtype == jnp.bfloat16
    np.testing.assert_allclose(lo.astype(jnp.float32), hi, atol=0.1)


_SITE_PATHS = {"q": ("self_attn", "q_proj"), "k": ("self_attn", "k_proj"),
               "v": ("self_attn", "v_proj"), "o": ("self_attn", "out_proj"),
               "fc1": ("mlp", "fc1"), "fc2": ("mlp", "fc2")}


@pytest.mark.parametrize("unrolled", [False, True])
@pytest.mark.parametrize("site", clip.SITES)
def test_an_update_at_any_site_is_that_weight_edited(tiny, site, unrolled):
    """A dense update D of `site` in blocks 1 and 3 of both towers gives the features of the
    plain model whose kernel there is W + scale * D; a low-rank chain A B the same as D = A B."""
    model, params, pixels, ids = tiny
    model = clip.CLIP(dataclasses.replace(model.config, unrolled=unrolled))
    layers, scale = (1, 3), 0.5
    rng = np.random.default_rng(7)
    edited = jax.tree.map(lambda x: x, params)
    got = {}
    for tower, cfg in (("vision_model", model.config.vision), ("text_model", model.config.text)):
        fan_in, fan_out = clip.site_shape(site, cfg)
        a = jnp.asarray(0.2 * rng.standard_normal((2, fan_in, 3)), jnp.float32)
        b = jnp.asarray(0.2 * rng.standard_normal((2, 3, fan_out)), jnp.float32)
        dense = jnp.einsum("nir,nro->nio", a, b, precision="highest")
        got[tower] = [clip.LayerAdapters(layers=layers, updates={site: clip.Update(f, scale)})
                      for f in ((dense,), (a, b))]
        group, name = _SITE_PATHS[site]
        kernel = edited[tower]["encoder"]["layers"][group][name]["kernel"]
        edited[tower]["encoder"]["layers"][group][name]["kernel"] = kernel.at[
            jnp.asarray(layers)].add(scale * dense)
    want_img = clip.encode_image(model, edited, pixels)
    want_txt = clip.encode_text(model, edited, ids)
    assert not np.allclose(want_img, clip.encode_image(model, params, pixels), atol=1e-3)
    for v, t in zip(got["vision_model"], got["text_model"]):
        np.testing.assert_allclose(clip.encode_image(model, params, pixels, v), want_img,
                                   atol=2e-5, rtol=0)
        np.testing.assert_allclose(clip.encode_text(model, params, ids, t), want_txt,
                                   atol=2e-5, rtol=0)


def test_update_factors_that_do_not_chain_are_named(tiny):
    model, params, pixels, _ = tiny
    bad = clip.LayerAdapters(layers=(1,), updates={"fc1": clip.Update(
        (jnp.zeros((1, 32, 2)), jnp.zeros((1, 2, 32))))})
    with pytest.raises(ValueError, match=r"update of fc1 has factors .*\(1, ., 64\)"):
        clip.encode_image(model, params, pixels, bad)
    with pytest.raises(ValueError, match="unknown update site 'gate'"):
        clip.encode_image(model, params, pixels, clip.LayerAdapters(
            layers=(1,), updates={"gate": clip.Update((jnp.zeros((1, 32, 32)),))}))
