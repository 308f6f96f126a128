"""tuneline.metrics on small hand-counted confusions: the numbers evaluation, compression and the
gate all report."""

from __future__ import annotations

import json

import pytest

from tuneline.metrics import classification_metrics, confusion, majority_baseline

pytestmark = pytest.mark.unit

LABELS = ["ham", "spam", "eggs"]
# true ham x4 (3 right, 1 called spam), spam x3 (2 right, 1 called ham), eggs x1 (called ham):
#            predicted  ham spam eggs
#   true ham             3    1    0
#   true spam            1    2    0
#   true eggs            1    0    0
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2]
Y_PRED = [0, 0, 0, 1, 1, 1, 0, 0]


def test_confusion_rows_are_truths_and_columns_predictions() -> None:
    assert confusion(Y_TRUE, Y_PRED, 3).tolist() == [[3, 1, 0], [1, 2, 0], [1, 0, 0]]


def test_known_confusion_gives_known_metrics() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert m["accuracy"] == pytest.approx(5 / 8)
    # ham: 3 of the 5 predicted ham are ham, 3 of the 4 ham found
    assert m["precision_ham"] == pytest.approx(3 / 5)
    assert m["recall_ham"] == pytest.approx(3 / 4)
    assert m["f1_ham"] == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    assert m["precision_spam"] == pytest.approx(2 / 3)
    assert m["recall_spam"] == pytest.approx(2 / 3)
    assert m["f1_spam"] == pytest.approx(2 / 3)
    # eggs never predicted: precision undefined -> 0, and so is its F1
    assert (m["precision_eggs"], m["recall_eggs"], m["f1_eggs"]) == (0.0, 0.0, 0.0)
    # macro-F1 is the unweighted mean over every label, the empty one included
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0.0) / 3)
    assert m["confusion"] == [[3, 1, 0], [1, 2, 0], [1, 0, 0]]


def test_a_class_predicted_but_never_true_has_zero_recall_not_an_error() -> None:
    m = classification_metrics([0, 0, 0], [0, 1, 1], ["ham", "spam"])
    assert m["recall_spam"] == 0.0 and m["precision_spam"] == 0.0
    assert m["precision_ham"] == pytest.approx(1.0)
    assert m["recall_ham"] == pytest.approx(1 / 3)
    assert m["f1_ham"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx(0.25)


def test_perfect_predictions() -> None:
    m = classification_metrics([0, 1, 1, 0], [0, 1, 1, 0], ["ham", "spam"])
    assert m["accuracy"] == m["macro_f1"] == 1.0
    for name in ("ham", "spam"):
        assert m[f"precision_{name}"] == m[f"recall_{name}"] == m[f"f1_{name}"] == 1.0


def test_no_examples_gives_zeros() -> None:
    m = classification_metrics([], [], ["ham", "spam"])
    assert m["accuracy"] == 0.0 and m["macro_f1"] == 0.0
    assert m["confusion"] == [[0, 0], [0, 0]]


def test_scalars_are_plain_floats_ready_for_mlflow_and_json() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    scalars = {k: v for k, v in m.items() if k != "confusion"}
    assert len(scalars) == 2 + 3 * len(LABELS)
    assert all(type(v) is float for v in scalars.values()), {k: type(v) for k, v in scalars.items()}
    json.dumps(m)  # numpy ints in the confusion would raise here


def test_truths_and_predictions_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        classification_metrics([0, 1, 1], [0, 1], ["ham", "spam"])


def test_majority_baseline_predicts_the_most_frequent_training_class() -> None:
    # spam (1) is the training majority; the test split has 2 spam out of 5
    assert majority_baseline([1, 1, 0, 1], [1, 0, 0, 1, 0]) == pytest.approx(2 / 5)
    assert majority_baseline([0, 0, 1], [1, 1, 1]) == 0.0


def test_majority_baseline_tie_goes_to_the_lowest_label_id() -> None:
    assert majority_baseline([1, 0, 1, 0], [0, 0, 1]) == pytest.approx(2 / 3)
