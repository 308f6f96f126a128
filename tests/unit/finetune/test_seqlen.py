"""`train.max_seq_len: auto` and `train.truncation` (issue 14, item 2): the length comes from
the training split's token lengths within the model's limit, and a long text is cut the same
way by the trainer/parity side (tuneline.truncation) and by serving (serving.tokens)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.tokens import encode_head_tail, load_tokenizer
from tasks.finetune.seqlen import auto_length, resolve_seq_len
from tests.params import params
from tuneline.models import encode, resolve_model_source
from tuneline.schema import AUTO_SEQ_LEN
from tuneline.truncation import Cut, head_tail, model_seq_len, tokenize

pytestmark = pytest.mark.unit

WORDS = [
    "market",
    "rally",
    "shares",
    "bank",
    "profit",
    "growth",
    "inflation",
    "policy",
    "rates",
    "quarter",
]


def article(i: int, words: int) -> str:
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(words)) + f" ends {i}"


def prepared(tmp_path: Path, words: int) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    texts = [article(i, words) for i in range(40)]
    pd.DataFrame({"text": texts, "label": [i % 2 for i in range(40)]}).to_parquet(
        tmp_path / "train.parquet"
    )
    return tmp_path


def test_params_yaml_says_auto_and_a_profile_may_set_a_number() -> None:
    assert params("default").train.max_seq_len == AUTO_SEQ_LEN
    assert params("smoke").train.max_seq_len == 64
    assert params("default", **{"train.max_seq_len": 256}).train.max_seq_len == 256


def test_auto_length_is_a_rounded_percentile_within_the_cap() -> None:
    lengths = np.arange(1, 1001)
    assert auto_length(lengths, 95, 512) == 512  # p95 = 950 > the cap
    assert auto_length(lengths, 10, 512) == 104  # p10 = 100.9, rounded up to a multiple of 8
    assert auto_length(np.array([3, 4, 5]), 100, 512) == 8


def test_long_texts_get_a_length_over_128_and_short_ones_a_short_one(tmp_path: Path) -> None:
    p = params("default")  # MiniLM, max_seq_len: auto
    long = resolve_seq_len(p, prepared(tmp_path / "long", 400), None).train.max_seq_len
    short = resolve_seq_len(p, prepared(tmp_path / "short", 8), None).train.max_seq_len
    assert 128 < long <= 512
    assert 8 <= short <= 32
    fixed = params("smoke")
    assert resolve_seq_len(fixed, tmp_path / "long", None) is fixed  # a set length stays


def test_compression_reads_back_the_length_the_model_trained_at(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text('{"model_max_length": 320}')
    assert model_seq_len(params("default"), tmp_path).train.max_seq_len == 320
    assert model_seq_len(params("smoke"), tmp_path).train.max_seq_len == 64


def test_head_tail_keeps_the_start_and_the_end() -> None:
    ids = list(range(100))
    assert head_tail(ids, 8, 0.25) == [0, 1, 94, 95, 96, 97, 98, 99]
    assert head_tail(ids[:5], 8, 0.25) == ids[:5]


@pytest.mark.parametrize("share", [0.25, 0.5])
def test_training_parity_and_serving_cut_a_long_text_alike(share: float) -> None:
    from transformers import AutoTokenizer

    source = Path(resolve_model_source("minilm"))
    hf = AutoTokenizer.from_pretrained(str(source))
    texts = [article(i, 300) for i in range(3)] + ["a short one"]
    cut = Cut("head_tail", share)
    ours = tokenize(hf, texts, 64, cut)["input_ids"]
    assert all(len(x) <= 64 for x in ours) and len(ours[-1]) < 10
    assert ours[0][-3:] == hf(texts[0])["input_ids"][-3:]  # "... ends 0 [SEP]"
    tok, fast, pad = load_tokenizer(source, 64, truncate=False)
    assert fast
    ids, mask = encode_head_tail(tok, texts, 64, share, pad)
    assert [row[m == 1].tolist() for row, m in zip(ids, mask, strict=True)] == ours
    feeds = encode(hf, texts, 64, cut=cut)  # the PyTorch side of parity, padded
    assert np.array_equal(feeds["input_ids"], ids) and np.array_equal(feeds["attention_mask"], mask)
    head = tokenize(hf, texts, 64, Cut("head", 1.0))["input_ids"]
    assert head == hf(texts, truncation=True, max_length=64)["input_ids"]
