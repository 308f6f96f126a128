"""How a text longer than `train.max_seq_len` tokens is cut: `head` keeps its start, `head_tail`
keeps `train.truncation_head_share` of the kept tokens from the start and the rest from the
end (a long article's conclusion often says what it is about).

One rule for training (TextDataset), the PyTorch references of parity and evaluation (encode,
torch_logits) and, through variant.json, serving (serving/tokens.py cuts the same way; it may
not import this package, so it holds its own copy of `head_tail`, and parity compares the two
on every export). The fine-tuned model directory records the rule in truncation.json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline.schema import AUTO_SEQ_LEN, Params, TrainParams

CUT_FILE = "truncation.json"  # in a fine-tuned model dir: {"truncation", "truncation_head_share"}


@dataclass(frozen=True)
class Cut:
    """A truncation rule: `mode` head | head_tail, `head_share` of the kept tokens at the start."""

    mode: str
    head_share: float

    def meta(self) -> dict[str, Any]:
        """The rule as variant.json / truncation.json keys."""
        return {"truncation": self.mode, "truncation_head_share": self.head_share}


HEAD = Cut("head", 1.0)  # plain truncation: what a directory without truncation.json had


def cut_of(tp: TrainParams) -> Cut:
    """The rule `params.train` sets."""
    return Cut(tp.truncation, tp.truncation_head_share)


def write_cut(model_dir: Path, cut: Cut) -> None:
    """Record `cut` in a model directory (the worker's final model)."""
    from tuneline.io import write_json  # pandas comes with tuneline.io: not at import here

    write_json(model_dir / CUT_FILE, cut.meta())


def cut_of_dir(model_dir: Path | str) -> Cut:
    """The rule a model directory was trained with (HEAD when it records none)."""
    path = Path(model_dir) / CUT_FILE
    if not path.exists():
        return HEAD
    info = json.loads(path.read_text(encoding="utf-8"))
    return Cut(str(info["truncation"]), float(info["truncation_head_share"]))


def head_tail(ids: Sequence[int], keep: int, head_share: float) -> list[int]:
    """`keep` of `ids`: the first round(keep x head_share), the rest from the end.

    Args:
        ids: token ids without special tokens.
        keep: how many to keep (>= 0).
        head_share: in (0, 1].
    """
    if len(ids) <= keep:
        return list(ids)
    head = min(keep, round(keep * head_share))
    return list(ids[:head]) + (list(ids[len(ids) - (keep - head) :]) if keep > head else [])


def _cut_row(ids: list[int], special: list[int], max_length: int, share: float) -> list[int]:
    """The tokens between a row's leading and trailing special tokens cut by `head_tail`."""
    lead = next((i for i, m in enumerate(special) if not m), len(special))
    trail = next((i for i, m in enumerate(reversed(special)) if not m), 0)
    body = head_tail(ids[lead : len(ids) - trail], max_length - lead - trail, share)
    return ids[:lead] + body + ids[len(ids) - trail :]


def tokenize(
    tokenizer: Any, texts: Sequence[str], max_length: int, cut: Cut
) -> dict[str, list[list[int]]]:
    """input_ids and attention_mask per text (unpadded), cut to `max_length` by `cut`.

    Args:
        tokenizer: a transformers tokenizer.
        texts: the texts.
        max_length: tokens per text, special tokens included.
        cut: the truncation rule.
    """
    if max_length == AUTO_SEQ_LEN:
        raise ValueError("train.max_seq_len is 'auto': resolve it before tokenizing")
    if cut.mode == "head":
        enc = tokenizer(list(texts), truncation=True, max_length=max_length)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    enc = tokenizer(list(texts), truncation=False, return_special_tokens_mask=True, verbose=False)
    ids = [
        _cut_row(x, m, max_length, cut.head_share)
        for x, m in zip(enc["input_ids"], enc["special_tokens_mask"], strict=True)
    ]
    return {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}


def model_seq_len(params: Params, model_dir: Path | str) -> Params:
    """`params` with the length a fine-tuned model was trained at, when it is `auto`.

    The fine-tune worker saves the tokenizer with model_max_length = that length.

    Args:
        params: settings.
        model_dir: the fine-tuned HF model directory.
    """
    if params.train.max_seq_len != AUTO_SEQ_LEN:
        return params
    config = Path(model_dir) / "tokenizer_config.json"
    length = int(json.loads(config.read_text(encoding="utf-8"))["model_max_length"])
    tp = params.train.model_copy(update={"max_seq_len": length})
    return params.model_copy(update={"train": tp})
