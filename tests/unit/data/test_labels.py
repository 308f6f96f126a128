"""Label normalising and the smallest class a stratified split can take (issue 14, item 6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.data.labels import normalise_labels
from tasks.data.prepare import MIN_CLASS_ROWS, class_split, stratified_sample, stratified_split

pytestmark = pytest.mark.unit


def test_whitespace_and_case_become_one_class_named_by_its_most_frequent_spelling() -> None:
    raw = pd.Series(["spam", "Spam ", "SPAM", " ham", "ham", "spam", 1, None, ["a"]])
    out, merges = normalise_labels(raw, "merge")
    assert out.tolist() == ["spam", "spam", "spam", "ham", "ham", "spam", 1, None, ["a"]]
    assert [m.describe() for m in merges] == [
        "' ham' (1 rows) -> 'ham'",
        "'SPAM' (1 rows), 'Spam ' (1 rows) -> 'spam'",
    ]


def test_preserve_keeps_case_but_still_strips() -> None:
    out, merges = normalise_labels(pd.Series(["Spam ", "spam", "Spam"]), "preserve")
    assert out.tolist() == ["Spam", "spam", "Spam"]
    assert [m.into for m in merges] == ["Spam"]


def test_a_configured_label_gives_the_spelling() -> None:
    out, _ = normalise_labels(pd.Series(["SPAM", "SPAM", "Ham"]), "merge", ("ham", "spam"))
    assert out.tolist() == ["spam", "spam", "ham"]


def test_clean_labels_are_untouched_and_nothing_is_reported() -> None:
    raw = pd.Series(["ham", "spam", "ham"])
    out, merges = normalise_labels(raw, "merge")
    assert out.tolist() == raw.tolist() and merges == ()


@pytest.mark.parametrize(("val", "test"), [(0.1, 0.2), (0.3, 0.3), (0.4, 0.5), (0.45, 0.45)])
def test_a_class_of_three_or_more_rows_is_in_every_split(val: float, test: float) -> None:
    for n in range(MIN_CLASS_ROWS, 40):  # 4 rows at 0.45/0.45 once rounded to 2 + 2 + 0
        n_test, n_val = class_split(n, val, test)
        assert n_test >= 1 and n_val >= 1 and n - n_test - n_val >= 1, n
    labels = np.array([0] * 50 + [1] * MIN_CLASS_ROWS)
    parts = stratified_split(labels, val, test, seed=0)
    assert all((labels[idx] == 1).sum() == 1 for idx in parts.values())
    short = np.array([0] * 50 + [1] * (MIN_CLASS_ROWS - 1))
    assert not (short[stratified_split(short, val, test, seed=0)["train"]] == 1).any()


def test_a_large_class_splits_by_its_fractions_as_before() -> None:
    # the give-back only acts when train would be empty: the built-in splits do not move
    assert class_split(4200, 0.1, 0.2) == (840, 420) and class_split(637, 0.1, 0.2) == (127, 64)


def test_a_sample_keeps_enough_of_a_rare_class_for_every_split() -> None:
    labels = np.array([0] * 990 + [1] * 10)
    keep = stratified_sample(labels, 100, seed=0, fewest=3)
    assert (labels[keep] == 1).sum() == 3
