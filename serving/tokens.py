"""Reading a variant's tokenizer and grouping a batch by token length (serving/predictor.py).

Bundled into the Bento with the predictor; depends on tokenizers and numpy (transformers only
for a variant without tokenizer.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

# BERT-style position embeddings stop at 512; a larger `model_max_length` is a placeholder.
_MAX_POSITIONS = 512

# A bucket of a length-sorted batch grows while its longest text has at most BUCKET_RATIO x
# the tokens of its shortest, or while it holds fewer than BUCKET_MIN_ROWS texts (one more
# runtime call costs about as much as a few rows, so tiny buckets do not pay).
BUCKET_RATIO = 2.0
BUCKET_MIN_ROWS = 8


def length_buckets(lengths: np.ndarray) -> list[np.ndarray]:
    """Row indices of a batch grouped by token length, shortest first.

    Args:
        lengths: tokens per row.

    Returns:
        Index arrays that together hold every row once; each is run padded to its longest.
    """
    order = np.argsort(lengths, kind="stable")
    buckets, start = [], 0
    for i in range(1, len(order) + 1):
        if i == len(order) or (
            i - start >= BUCKET_MIN_ROWS
            and lengths[order[i]] > BUCKET_RATIO * lengths[order[start]]
        ):
            buckets.append(order[start:i])
            start = i
    return buckets


def max_length_of(model_dir: Path, variant: dict[str, Any]) -> int:
    """Truncation length: variant.json "max_seq_len", else the tokenizer's model_max_length,
    capped at 512 (BERT-style position embeddings stop there)."""
    value = variant.get("max_seq_len")
    if isinstance(value, int) and value > 0:
        return min(value, _MAX_POSITIONS)
    config = model_dir / "tokenizer_config.json"
    if config.exists():
        value = json.loads(config.read_text(encoding="utf-8")).get("model_max_length")
        if isinstance(value, int | float) and 0 < value <= _MAX_POSITIONS:
            return int(value)
    return _MAX_POSITIONS


def load_tokenizer(model_dir: Path, max_length: int) -> tuple[Any, bool, int]:
    """The variant's tokenizer, padding to the longest row and truncating at `max_length`.

    Args:
        model_dir: the variant directory (tokenizer.json, or files AutoTokenizer reads).
        max_length: truncation length.

    Returns:
        (tokenizer, whether it is a `tokenizers.Tokenizer`, the pad token id).
    """
    tok_file = model_dir / "tokenizer.json"
    if tok_file.exists():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tok_file))
        pad_id = tok.token_to_id("[PAD]")
        pad_token = "[PAD]"
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            special = model_dir / name
            if not special.exists():
                continue
            pad = json.loads(special.read_text(encoding="utf-8")).get("pad_token")
            pad = pad.get("content") if isinstance(pad, dict) else pad
            if isinstance(pad, str) and tok.token_to_id(pad) is not None:
                pad_token, pad_id = pad, tok.token_to_id(pad)
                break
        tok.enable_padding(pad_id=pad_id or 0, pad_token=pad_token)
        tok.enable_truncation(max_length=max_length)
        return tok, True, pad_id or 0
    # No tokenizer.json (slow-tokenizer files only): let transformers read them, safely.
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False), False, 0
