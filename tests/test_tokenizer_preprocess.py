"""Tokenizer checks and CLIP image preprocessing (against transformers' CLIPImageProcessor)."""

import json
import os

import numpy as np
import pytest
import transformers
from PIL import Image

from adaring_jax.models import clip, convert, preprocess, tokenizer
from conftest import FIXTURES

SRC = os.path.join(FIXTURES, "clip_quickgelu_eos2")


@pytest.fixture(scope="module")
def tok():
    model, _ = convert.load_pretrained(SRC)
    return tokenizer.load_tokenizer(SRC, model.config.text), model.config.text


def test_tokenize_pads_and_keeps_end_of_text(tok):
    tok, text = tok
    vocab = json.load(open(os.path.join(SRC, "vocab.json")))
    ids = tok(["a photo of a red cat.", "blue " * 40])
    assert ids.shape == (2, text.context_length) and ids.dtype == np.int32
    words = ["<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "red</w>", "cat</w>",
             ".</w>", "<|endoftext|>"]
    np.testing.assert_array_equal(ids[0, :9], [vocab[w] for w in words])
    assert (ids[0, 9:] == vocab["<|endoftext|>"]).all()  # padded with the pad (= eos) token
    # Truncated to the context length with the end-of-text token kept last.
    assert ids[1, -1] == vocab["<|endoftext|>"] and (ids[1, 1:-1] == vocab["blue</w>"]).all()


def test_vocab_size_mismatch_is_refused(tok):
    _, text = tok
    bigger = clip.TextConfig(**{**text.__dict__, "vocab_size": 49408})
    with pytest.raises(tokenizer.TokenizerError,
                       match=r"has 554 tokens but the text tower's vocab_size is 49408"):
        tokenizer.load_tokenizer(SRC, bigger)


def test_missing_tokenizer_says_where_it_looked(tmp_path, tok):
    _, text = tok
    with pytest.raises(tokenizer.TokenizerError,
                       match=f"no tokenizer in {tmp_path}: looked for tokenizer.json or vocab"):
        tokenizer.load_tokenizer(str(tmp_path), text)


def test_write_vocab_size_and_order(tmp_path):
    n = tokenizer.write_vocab(["cat", "cab"], str(tmp_path))
    vocab = json.load(open(tmp_path / "vocab.json"))
    # 512 byte symbols, merges "ca", "cat</w>", "cab</w>", then the two special tokens last.
    assert n == len(vocab) == 512 + 3 + 2
    assert vocab["<|endoftext|>"] == n - 1 and vocab["<|startoftext|>"] == n - 2


def _image(mode, size=(61, 45)):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8))
    return rgb if mode == "RGB" else rgb.convert(mode)


@pytest.mark.parametrize("mode,size", [("RGB", (61, 45)), ("RGB", (30, 70)), ("L", (50, 50)),
                                       ("RGBA", (40, 33)), ("CMYK", (33, 40)), ("P", (64, 48))])
def test_eval_transform_matches_clip_image_processor(mode, size):
    img = _image(mode, size)
    hf = transformers.CLIPImageProcessor(size={"shortest_edge": 32},
                                         crop_size={"height": 32, "width": 32})
    want = hf(images=img, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
    got = preprocess.eval_transform(img, 32)
    assert got.shape == (32, 32, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_load_images_batches_files(tmp_path):
    paths = []
    for i, mode in enumerate(["RGB", "L", "RGBA"]):
        paths.append(str(tmp_path / f"{i}.png"))
        _image(mode).save(paths[-1])
    batch = preprocess.load_images(paths, 24)
    assert batch.shape == (3, 24, 24, 3)


def test_token_ids_equal_clips_own_tokenizer_on_cleaned_text_and_class_names(tmp_path):
    """The real CLIP vocabulary, built from CLIP's bpe_simple_vocab_16e6.txt.gz, against ids
    from CLIP's own simple_tokenizer.py (tests/fixtures/make_tokenizer_cases.py): ligatures,
    full-width letters, quotes, entities, mojibake, sigma, control characters, and every
    TFDS-backed CoOp class name."""
    from adaring_jax.models import clip as clip_models
    from adaring_jax.models import tokenizer as tokenizers
    fixtures = os.path.join(os.path.dirname(__file__), "fixtures")
    assert tokenizers.write_clip_bpe(os.path.join(fixtures, "clip_bpe",
                                                  "bpe_simple_vocab_16e6.txt.gz"),
                                     str(tmp_path)) == 49408
    tok = tokenizers.load_tokenizer(str(tmp_path), clip_models.PRESETS["ViT-B/16"].text)
    with open(os.path.join(fixtures, "tokenizer_cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    assert len(cases["strings"]) > 1000
    ids = tok(cases["strings"])
    wrong = []
    for text, want, got in zip(cases["strings"], cases["ids"], ids):
        end = int(np.argmax(got == tok.eos_token_id))
        if got[0] != tok.hf.bos_token_id or list(got[1:end]) != want[:75]:
            wrong.append(text)
    assert not wrong, wrong
    assert list(tok("a photo of a cat")[0, :7]) == [49406, 320, 1125, 539, 320, 2368, 49407]
