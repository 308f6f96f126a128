"""`train.max_seq_len: auto`: the token length to train, check and serve at, from the data.

Texts are cut at one length everywhere (training, parity, the gate, serving). A fixed 128
cuts a news article to a fraction of itself and pads an SMS to twice its size; `auto` takes
the `train.seq_len_percentile` percentile of the training split's token lengths (special
tokens included), rounded up to a multiple of 8 and capped at the model's limit. The chosen
length goes into the params the worker trains with (so into the MLflow run's params and the
saved tokenizer's model_max_length, which compression reads back through
tuneline.truncation.model_seq_len) and onto the console.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneline.config import Params
from tuneline.console import say
from tuneline.models import TINY, resolve_model_source
from tuneline.schema import AUTO_SEQ_LEN

POSITIONS_CAP = 512  # BERT-style position embeddings (and the tiny BERT's) stop here
ROUND_TO = 8  # lengths in multiples of 8 keep the runtimes' kernels on their fast paths


def auto_length(lengths: np.ndarray, percentile: float, cap: int) -> int:
    """The `percentile` of `lengths`, rounded up to a multiple of 8, within [8, cap].

    Args:
        lengths: tokens per training text (special tokens included).
        percentile: in (0, 100].
        cap: the model's limit.
    """
    if len(lengths) == 0:
        return min(cap, ROUND_TO)
    wanted = math.ceil(float(np.percentile(lengths, percentile)) / ROUND_TO) * ROUND_TO
    return int(max(ROUND_TO, min(cap, wanted)))


def _tokenizer_and_cap(model: str, tokenizer_dir: Path | None) -> tuple[Any, int]:
    from transformers import AutoConfig, AutoTokenizer

    source = str(tokenizer_dir) if tokenizer_dir else resolve_model_source(model)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    cap = POSITIONS_CAP
    if source != TINY and not tokenizer_dir:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
        cap = min(cap, int(getattr(config, "max_position_embeddings", cap)))
    limit = getattr(tokenizer, "model_max_length", cap)
    if isinstance(limit, int) and 0 < limit < cap:
        cap = limit
    return tokenizer, cap


def resolve_seq_len(params: Params, prepared_dir: Path, tokenizer_dir: Path | None) -> Params:
    """`params` with `train.max_seq_len` chosen from the data when it is `auto`.

    Args:
        params: settings.
        prepared_dir: holds train.parquet.
        tokenizer_dir: the tiny BERT's trained tokenizer; None for a pretrained model.

    Returns:
        `params` itself when the length is set, else a copy with the chosen length.
    """
    tp = params.train
    if tp.max_seq_len != AUTO_SEQ_LEN:
        return params
    tokenizer, cap = _tokenizer_and_cap(tp.model, tokenizer_dir)
    texts = pd.read_parquet(prepared_dir / "train.parquet", columns=["text"])["text"]
    ids = tokenizer(texts.astype(str).tolist(), truncation=False, verbose=False)["input_ids"]
    lengths = np.array([len(x) for x in ids])
    length = auto_length(lengths, tp.seq_len_percentile, cap)
    cut = float(np.mean(lengths > length)) if len(lengths) else 0.0
    say(
        f"{'':9s} max_seq_len auto: {length} tokens (p{tp.seq_len_percentile:g} of "
        f"{len(lengths):,} training texts, model limit {cap}; {cut:.1%} cut, {tp.truncation})"
    )
    return params.model_copy(update={"train": tp.model_copy(update={"max_seq_len": length})})
