"""CLIP's BPE tokenizer, offline: built from the vocabulary OpenAI's CLIP ships, ids equal to SD-1.5's.

`scott/assets/bpe_simple_vocab_16e6.txt.gz` is CLIP's own merge list (MIT licence, as shipped by
openai/CLIP and open_clip). We turn it into the vocab.json / merges.txt pair that transformers'
CLIPTokenizer reads, the same files an SD-1.5 folder has under tokenizer/.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import torch
from transformers import CLIPTokenizer

MAX_LENGTH = 77
NUM_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48,894 merges of the file


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def write_clip_tokenizer(out_dir: Path) -> Path:
    """Write vocab.json, merges.txt and tokenizer_config.json for CLIP's tokenizer into out_dir."""
    raw = files("scott").joinpath("assets/bpe_simple_vocab_16e6.txt.gz").read_bytes()
    merges = [tuple(line.split()) for line in gzip.decompress(raw).decode("utf-8").split("\n")[1 : NUM_MERGES + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return out_dir


def load_tokenizer(tokenizer_dir: Path) -> CLIPTokenizer:
    """Load a CLIP tokenizer folder (ours or an SD-1.5 one) from disk only."""
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    if tokenizer.model_max_length > 10_000:  # folders without a max length: CLIP's window
        tokenizer.model_max_length = MAX_LENGTH
    return tokenizer


def tokenize(tokenizer: CLIPTokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """(B, window) token ids, padded and truncated to the encoder's window, as SD pipelines feed CLIP."""
    window = tokenizer.model_max_length
    return tokenizer(list(prompts), padding="max_length", max_length=window, truncation=True, return_tensors="pt")[
        "input_ids"
    ]


def token_counts(tokenizer: CLIPTokenizer, prompts: Sequence[str]) -> list[int]:
    """Tokens of each prompt before truncation (start and end tokens included)."""
    # verbose=False: an over-long prompt is expected here (callers report it), not worth a warning each.
    return [len(ids) for ids in tokenizer(list(prompts), truncation=False, verbose=False)["input_ids"]]
