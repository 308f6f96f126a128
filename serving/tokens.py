"""Reading a variant's tokenizer and grouping a batch by token length (serving/predictor.py).

Bundled into the Bento with the predictor; depends on tokenizers and numpy (transformers only
for a variant without tokenizer.json).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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


def head_tail(ids: Sequence[int], keep: int, head_share: float) -> list[int]:
    """`keep` of `ids`: the first round(keep x head_share), the rest from the end.

    The same rule as tuneline.truncation.head_tail (which the trainer and the parity check use;
    serving may not import it): parity on every export compares the two.
    """
    if len(ids) <= keep:
        return list(ids)
    head = min(keep, round(keep * head_share))
    return list(ids[:head]) + (list(ids[len(ids) - (keep - head) :]) if keep > head else [])


def head_tail_share(variant: dict[str, Any]) -> float | None:
    """The head share when variant.json says `"truncation": "head_tail"`, else None (head)."""
    if variant.get("truncation") != "head_tail":
        return None
    return float(variant["truncation_head_share"])


def encode_head_tail(
    tok: Any, texts: Sequence[str], max_length: int, head_share: float, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """ids and mask [batch, longest] of a `tokenizers.Tokenizer` loaded with truncate=False:
    each text's tokens between its leading and trailing special tokens cut by `head_tail`."""
    rows = []
    for enc in tok.encode_batch(list(texts)):
        special = enc.special_tokens_mask
        lead = next((i for i, m in enumerate(special) if not m), len(special))
        trail = next((i for i, m in enumerate(reversed(special)) if not m), 0)
        ids = enc.ids
        body = head_tail(ids[lead : len(ids) - trail], max_length - lead - trail, head_share)
        rows.append(ids[:lead] + body + ids[len(ids) - trail :])
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)], mask[i, : len(row)] = row, 1
    return out, mask


def load_tokenizer(
    model_dir: Path, max_length: int, truncate: bool = True
) -> tuple[Any, bool, int]:
    """The variant's tokenizer, padding to the longest row and truncating at `max_length`.

    Args:
        model_dir: the variant directory (tokenizer.json, or files AutoTokenizer reads).
        max_length: truncation length.
        truncate: False for head_tail variants: a `tokenizers.Tokenizer` then neither pads
            nor truncates (`encode_head_tail` does both).

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
        if truncate:
            tok.enable_padding(pad_id=pad_id or 0, pad_token=pad_token)
            tok.enable_truncation(max_length=max_length)
        else:
            tok.no_padding()
            tok.no_truncation()
        return tok, True, pad_id or 0
    # No tokenizer.json (slow-tokenizer files only): let transformers read them, safely.
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False), False, 0
