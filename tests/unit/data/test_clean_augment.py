"""Cleaning and augmentation: what they change, what they count, and that they are repeatable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.data.augment import augment_train, random_delete, random_swap, synonym_replace
from tasks.data.clean import clean_frame, clean_text
from tasks.data.prepare import stratified_split
from tests.params import section

pytestmark = pytest.mark.unit
TH = {"good": ["beneficial", "full"], "movie": ["film", "flick"], "great": ["outstanding"]}


def test_clean_text_normalises() -> None:
    p = section("data.clean")
    assert clean_text("  <b>Hello</b>&amp;\tworld\r\n  ", p) == "Hello & world"
    assert clean_text("e\u0301", p) == "\u00e9"  # NFC
    assert clean_text("a\x00b\x07c", p) == "abc"  # NUL and control chars removed
    assert clean_text("\ufeffhi\u200bthere", p) == "hithere"
    assert clean_text("ABC", section("data.clean", lowercase=True)) == "abc"


def test_clean_frame_counts_every_drop() -> None:
    df = pd.DataFrame(
        {"text": ["a  b", "a b", "<p></p>", "   ", "c", "C"], "label": [0, 0, 1, 1, 1, 0]}
    )
    out, counts = clean_frame(df, section("data.clean"))
    assert list(out["text"]) == ["a b", "c", "C"]
    assert (counts.rows_in, counts.dropped_empty, counts.dropped_duplicate, counts.rows_out) == (
        6,
        2,
        1,
        3,
    )


def _train() -> pd.DataFrame:
    texts = [f"this good movie number {i} was great fun" for i in range(30)]
    return pd.DataFrame({"text": texts, "label": [i % 2 for i in range(30)]})


def test_augmentation_is_deterministic_and_flagged() -> None:
    params = section("data.augment", copies=2, rate=0.3)
    a = augment_train(_train(), params, 7, TH)
    b = augment_train(_train(), params, 7, TH)
    c = augment_train(_train(), params, 8, TH)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert a["augmented"].sum() > 30
    assert (~a["augmented"]).sum() == 30
    assert list(a[~a["augmented"]]["text"]) == list(_train()["text"])  # originals untouched
    # augmented rows keep the label of their source row, and add no duplicate text
    assert a["text"].is_unique


def test_augmentation_never_produces_held_out_texts() -> None:
    train = pd.DataFrame({"text": ["good movie", "great movie"], "label": [1, 1]})
    forbidden = {"movie good", "great film", "film great", "beneficial movie", "good film"}
    out = augment_train(train, section("data.augment", copies=5, rate=0.5), 1, TH, forbidden)
    assert not set(out["text"]) & forbidden


def test_augmentation_off_returns_originals() -> None:
    out = augment_train(_train(), section("data.augment", enabled=False), 1, TH)
    assert len(out) == 30 and not out["augmented"].any()


def test_eda_operations() -> None:
    rng = np.random.default_rng(0)
    words = ["the", "good", "movie"]
    replaced = synonym_replace(words, 2, rng, TH)
    assert replaced[0] == "the" and replaced[1] in TH["good"] and replaced[2] in TH["movie"]
    swapped = random_swap(words, 1, np.random.default_rng(0))
    assert sorted(swapped) == sorted(words) and swapped != words
    assert len(random_delete(words, 0.99, np.random.default_rng(0))) == 1


def test_stratified_split_keeps_proportions_and_is_disjoint() -> None:
    labels = np.array([0] * 80 + [1] * 20)
    parts = stratified_split(labels, 0.1, 0.2, seed=3)
    all_idx = np.concatenate(list(parts.values()))
    assert len(all_idx) == 100 and len(set(all_idx)) == 100
    assert (labels[parts["test"]] == 1).sum() == 4 and (labels[parts["val"]] == 1).sum() == 2
    again = stratified_split(labels, 0.1, 0.2, seed=3)
    assert all((parts[k] == again[k]).all() for k in parts)
