"""Parity statistics and their thresholds (tasks/compress/export.py): pure numpy, no model."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.compress.export import check_parity, parity_stats
from tuneline.errors import ParityError

pytestmark = pytest.mark.unit

REF = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]], dtype=np.float32)


def test_identical_logits_agree_fully_at_zero_distance():
    stats = parity_stats(REF, REF.copy())
    assert stats == {"agreement": 1.0, "max_abs_logit": 0.0, "rows": 4.0}


def test_agreement_is_the_share_of_equal_argmax_and_distance_the_largest_gap():
    cand = REF.copy()
    cand[2] = [0.5, 1.0]  # argmax flips 0 -> 1, |delta| 1.5
    cand[3] = [0.0, 3.25]  # same argmax, |delta| 0.25
    stats = parity_stats(REF, cand)
    assert stats["agreement"] == pytest.approx(0.75)
    assert stats["max_abs_logit"] == pytest.approx(1.5)
    assert stats["rows"] == 4.0


def test_a_small_shift_keeps_agreement_but_counts_in_the_distance():
    stats = parity_stats(REF, REF + np.float32(0.01))
    assert stats["agreement"] == 1.0
    assert stats["max_abs_logit"] == pytest.approx(0.01, rel=1e-3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_logit_can_never_pass(bad: float):
    cand = REF.copy()
    cand[1, 0] = bad
    stats = parity_stats(REF, cand)
    assert stats["agreement"] == 0.0 and stats["max_abs_logit"] == float("inf")
    with pytest.raises(
        ParityError, match=r"argmax agreement 0.0000 < 0.5; max \|delta logit\| inf"
    ):
        check_parity("broken", stats, max_abs_logit=1e6, min_agreement=0.5)


def test_shapes_that_differ_are_a_parity_error():
    with pytest.raises(ParityError, match=r"shapes differ: PyTorch \(4, 2\) vs ONNX \(3, 2\)"):
        parity_stats(REF, REF[:3])


def test_no_rows_is_full_agreement_at_zero_distance():
    empty = np.zeros((0, 2), dtype=np.float32)
    assert parity_stats(empty, empty) == {"agreement": 1.0, "max_abs_logit": 0.0, "rows": 0.0}


def test_thresholds_are_inclusive():
    stats = {"agreement": 0.99, "max_abs_logit": 1e-3, "rows": 100.0}
    check_parity("fp32", stats, max_abs_logit=1e-3, min_agreement=0.99)  # does not raise


def test_a_breach_names_the_variant_both_numbers_and_both_thresholds():
    stats = {"agreement": 0.95, "max_abs_logit": 0.5, "rows": 80.0}
    with pytest.raises(ParityError) as err:
        check_parity("int8_dynamic", stats, max_abs_logit=0.1, min_agreement=0.99)
    message = str(err.value)
    assert "variant 'int8_dynamic'" in message and "80 test rows" in message
    assert "argmax agreement 0.9500 < 0.99" in message
    assert "max |delta logit| 0.5 > 0.1" in message


@pytest.mark.parametrize(
    ("stats", "problem"),
    [
        ({"agreement": 0.98, "max_abs_logit": 0.0, "rows": 1.0}, "argmax agreement"),
        ({"agreement": 1.0, "max_abs_logit": 0.2, "rows": 1.0}, "max |delta logit|"),
        ({"agreement": float("nan"), "max_abs_logit": 0.0, "rows": 1.0}, "argmax agreement"),
        ({"agreement": 1.0, "max_abs_logit": float("nan"), "rows": 1.0}, "max |delta logit|"),
    ],
)
def test_either_threshold_alone_fails_and_nan_fails(stats: dict[str, float], problem: str):
    with pytest.raises(ParityError) as err:
        check_parity("v", stats, max_abs_logit=0.1, min_agreement=0.99)
    assert problem in str(err.value)
    assert str(err.value).count(";") == 0  # only the breached threshold is reported
