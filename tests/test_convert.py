"""Checkpoint loading and saving: round trip, and every error path with its message."""

import json
import os
import shutil
import sys
import time

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from adaring_jax.models import clip, convert
from conftest import FIXTURES

SRC = os.path.join(FIXTURES, "clip_quickgelu_eos2")


def _copy(tmp_path, name="ckpt"):
    d = tmp_path / name
    shutil.copytree(SRC, d)
    return d


def _edit_weights(d, edit):
    tensors = load_file(d / "model.safetensors")
    edit(tensors)
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})


def test_save_load_round_trip_is_exact(tmp_path):
    model, params = convert.load_pretrained(SRC)
    out = convert.save_pretrained(model, params, str(tmp_path / "out"), tokenizer_dir=SRC)
    model2, params2 = convert.load_pretrained(out)
    assert model2.config == model.config
    jax.tree.map(np.testing.assert_array_equal, params, params2)
    # The written tensors are the source checkpoint's, name for name, bit for bit.
    a, b = load_file(os.path.join(SRC, "model.safetensors")), load_file(
        os.path.join(out, "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    for f in ("vocab.json", "merges.txt", "preprocessor_config.json"):
        assert os.path.exists(os.path.join(out, f))


def test_random_model_round_trip(tmp_path):
    model = clip.preset("tiny-gelu")
    params = clip.init_params(model, jax.random.key(1))
    model2, params2 = convert.load_pretrained(convert.save_pretrained(model, params, str(tmp_path)))
    assert model2.config == model.config
    jax.tree.map(np.testing.assert_array_equal, params, params2)


def test_missing_unexpected_and_misshaped_tensors_are_named(tmp_path):
    d = _copy(tmp_path)

    def edit(t):
        del t["text_model.encoder.layers.1.mlp.fc2.bias"]
        t["vision_model.extra.weight"] = np.zeros(3, np.float32)
        t["text_projection.weight"] = np.zeros((16, 31), np.float32)
        t["text_model.embeddings.position_ids"] = np.arange(16)[None]  # legacy buffer: ignored
    _edit_weights(d, edit)
    with pytest.raises(convert.BackboneError) as e:
        convert.load_pretrained(str(d))
    msg = str(e.value)
    assert "missing tensors (1):\n    text_model.encoder.layers.1.mlp.fc2.bias" in msg
    assert "unexpected tensors (1):\n    vision_model.extra.weight" in msg
    assert "text_projection.weight: checkpoint (16, 31), model (16, 32)" in msg
    assert "position_ids" not in msg


def test_unknown_path_says_where_it_looked(tmp_path):
    missing = tmp_path / "nowhere" / "ckpt"
    with pytest.raises(convert.BackboneError, match=f"no checkpoint directory at {missing}"):
        convert.load_pretrained(str(missing))


def test_file_instead_of_directory(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"")
    with pytest.raises(convert.BackboneError, match="is a file; expected a directory"):
        convert.load_pretrained(str(f))


def test_directory_without_config_or_weights(tmp_path):
    d = _copy(tmp_path)
    os.remove(d / "model.safetensors")
    with pytest.raises(convert.BackboneError,
                       match=r"no weights in .*model.safetensors, .*pytorch_model.bin"):
        convert.load_pretrained(str(d))
    os.remove(d / "config.json")
    with pytest.raises(convert.BackboneError, match=f"no config.json in {d}"):
        convert.load_pretrained(str(d))


def test_corrupt_files_fail_loudly(tmp_path):
    d = _copy(tmp_path)
    (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    with pytest.raises(convert.BackboneError, match="cannot read .*model.safetensors"):
        convert.load_pretrained(str(d))
    (d / "config.json").write_text("{not json")
    with pytest.raises(convert.BackboneError, match="config.json is not valid JSON"):
        convert.load_pretrained(str(d))


def test_non_clip_config(tmp_path):
    d = _copy(tmp_path)
    (d / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    with pytest.raises(convert.BackboneError, match="model_type 'siglip'.*only 'clip'"):
        convert.load_pretrained(str(d))


def test_pytorch_bin_without_torch(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    d = _copy(tmp_path)
    os.remove(d / "model.safetensors")
    (d / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(convert.BackboneError,
                       match="pytorch_model.bin is a PyTorch pickle and torch is not installed"):
        convert.load_pretrained(str(d))


def test_hub_id_offline_fails_fast_with_a_clear_message():
    start = time.monotonic()
    with pytest.raises(convert.BackboneError,
                       match=r"'openai/clip-vit-base-patch16' is not a local directory "
                             r"\(looked at .*\) and could not be fetched"):
        convert.load_pretrained("openai/clip-vit-base-patch16")
    assert time.monotonic() - start < 30


def test_hub_id_with_unreachable_network_fails_fast(monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")
    start = time.monotonic()
    with pytest.raises(convert.BackboneError, match="cannot reach hub.invalid:443"):
        convert.load_pretrained("openai/clip-vit-base-patch16")
    assert time.monotonic() - start < 30


def test_hf_config_round_trip():
    for name in ("ViT-B/16", "ViT-L/14-336", "tiny"):
        cfg = clip.PRESETS[name]
        assert convert.config_from_hf(convert.config_to_hf(cfg)) == cfg
