"""The CLIP tokenizer (Hugging Face `transformers`), checked against the model it feeds.

`load_tokenizer` reads `vocab.json` + `merges.txt` (or `tokenizer.json`) from a checkpoint
directory and refuses a vocabulary whose size differs from the text tower's: transformers 5 can
silently hand back a 2-token tokenizer when a hub download fails, which would otherwise only show
up as garbage accuracy.

`write_vocab` builds a CLIP-format byte-level BPE vocabulary covering a given word list; the
embedded `shapes` world uses it for its tiny CLIP, and tests use it for tiny checkpoints.
"""

from __future__ import annotations

import html
import json
import os
import re
from typing import Sequence

import numpy as np

from adaring_jax.errors import UserError
from adaring_jax.models import clip

START, END = "<|startoftext|>", "<|endoftext|>"


class TokenizerError(UserError, ValueError):
    """A tokenizer that is missing or does not fit the model."""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: printable bytes map to themselves, the rest to U+0100+."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def write_vocab(words: Sequence[str], out_dir: str) -> int:
    """Write vocab.json, merges.txt and tokenizer_config.json for a CLIP BPE whose merges spell
    each of `words` (lower-cased) as one token where possible. Returns the vocabulary size:
    512 byte symbols + one per merge + <|startoftext|> + <|endoftext|> (the last two ids)."""
    alphabet = list(_bytes_to_unicode().values())
    vocab = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    known = set(vocab)
    byte_map = _bytes_to_unicode()
    for word in sorted({w.lower() for w in words if w}):
        symbols = [byte_map[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        left = symbols[0]
        for right in symbols[1:]:
            merged = left + right
            if merged not in known:
                merges.append((left, right))
                vocab.append(merged)
                known.add(merged)
            left = merged
    vocab += [START, END]
    return _write(vocab, merges, out_dir)


def write_clip_bpe(bpe_gz: str, out_dir: str) -> int:
    """The real CLIP tokenizer files (vocab.json, merges.txt, tokenizer_config.json) from
    CLIP's own `bpe_simple_vocab_16e6.txt.gz` (shipped with OpenAI's CLIP and open_clip):
    its first 48,894 merges after the header line, over the 512 byte symbols, then
    <|startoftext|> and <|endoftext|>: 49,408 tokens. Returns the vocabulary size."""
    import gzip
    with gzip.open(bpe_gz, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:1 + 49152 - 256 - 2]]
    # CLIP's id order: the printable bytes first (in byte order), then the others.
    table = _bytes_to_unicode()
    alphabet = sorted(table.values(), key=lambda c: (ord(c) >= 256, ord(c)))
    vocab = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    return _write(vocab + [START, END], merges, out_dir)


def _write(vocab: list[str], merges, out_dir: str) -> int:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "CLIPTokenizer", "bos_token": START, "eos_token": END,
                   "pad_token": END, "unk_token": END, "model_max_length": 77}, f, indent=2)
    return len(vocab)


def clean(text: str) -> str:
    """CLIP's text cleaning before BPE (open_clip `tokenizer.py` basic_clean and
    whitespace_clean; OpenAI CLIP's simple_tokenizer.py): ftfy's fix_text (mojibake,
    ligatures, full-width letters, curly quotes, control characters), HTML entities unescaped
    twice, whitespace runs as one space, then lower-cased (Python's, which knows final sigma)."""
    import ftfy
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


class Tokenizer:
    """Texts -> int32 ids of shape (B, context_length): <start> tokens <end>, padded, truncated
    so that the end-of-text token is always kept."""

    def __init__(self, hf_tokenizer, context_length: int):
        self.hf = hf_tokenizer
        self.context_length = context_length
        self.eos_token_id = hf_tokenizer.convert_tokens_to_ids(END)
        self.vocab_size = len(hf_tokenizer)

    def __call__(self, texts: Sequence[str] | str, context_length: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        out = self.hf([clean(t) for t in texts], padding="max_length", truncation=True,
                      max_length=context_length or self.context_length, return_tensors="np")
        return out["input_ids"].astype(np.int32)


def load_tokenizer(directory: str, text: clip.TextConfig) -> Tokenizer:
    """The CLIP tokenizer saved in `directory`, validated against the text tower `text`."""
    if not any(os.path.exists(os.path.join(directory, f))
               for f in ("tokenizer.json", "vocab.json")):
        raise TokenizerError(f"no tokenizer in {directory}: looked for tokenizer.json or "
                             "vocab.json + merges.txt (save them beside config.json)")
    has = {f: os.path.exists(os.path.join(directory, f))
           for f in ("tokenizer.json", "vocab.json", "merges.txt")}
    if not has["tokenizer.json"] and has["vocab.json"] != has["merges.txt"]:
        missing = "merges.txt" if has["vocab.json"] else "vocab.json"
        raise TokenizerError(f"the tokenizer in {directory} is incomplete: {missing} is missing "
                             "(a CLIP BPE tokenizer needs vocab.json and merges.txt, or "
                             "tokenizer.json)")
    import transformers
    try:
        hf = transformers.CLIPTokenizer.from_pretrained(directory)
    except Exception as e:
        raise TokenizerError(f"cannot load the CLIP tokenizer from {directory}: {e}") from e
    if len(hf) != text.vocab_size:
        raise TokenizerError(
            f"tokenizer in {directory} has {len(hf)} tokens but the text tower's vocab_size is "
            f"{text.vocab_size}; the tokenizer files do not belong to this checkpoint")
    tok = Tokenizer(hf, text.context_length)
    if tok.eos_token_id is None or not 0 <= tok.eos_token_id < text.vocab_size:
        raise TokenizerError(f"tokenizer in {directory} has no {END} token")
    return tok
