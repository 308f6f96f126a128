"""The promotion gate's rules on hand-made scorecards (no I/O)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tasks.release.decision import Scorecard, decide_promotion
from tests.params import section

pytestmark = pytest.mark.unit

POLICY = section(
    "gate",
    min_accuracy=0.8,
    min_macro_f1=0.7,
    alpha=0.05,
    max_recall_drop=0.05,
    max_p95_latency_ms=100.0,
    max_size_mb=50.0,
    min_class_recall=0.1,
)


# behaviour and calibration figures inside every floor (tasks/release/trust.py has its own tests)
TRUSTED = {"invariance_typo": 1.0, "directional_user": 1.0, "ece": 0.0, "temperature": 1.0}


def card(correct: list[bool], recall: dict[str, float] | None = None, **kw: object) -> Scorecard:
    acc = sum(correct) / len(correct)
    base = Scorecard(
        correct=tuple(correct),
        accuracy=acc,
        macro_f1=acc,
        recall=recall or {"ham": acc, "spam": acc},
        p95_latency_ms=10.0,
        size_mb=5.0,
        parity_passed=True,
        data_validated=True,
        data_committed=True,
        trust=TRUSTED,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def failed(decision_reasons: tuple[str, ...]) -> list[str]:
    return [r for r in decision_reasons if r.startswith("FAIL")]


def test_first_model_judged_by_floors_alone() -> None:
    decision = decide_promotion(card([True] * 90 + [False] * 10), None, POLICY)
    assert decision.promote
    assert any("no champion" in r for r in decision.reasons)
    assert not failed(decision.reasons)
    assert decision.deltas == {}


def test_first_model_below_floor_is_refused() -> None:
    decision = decide_promotion(card([True] * 70 + [False] * 30), None, POLICY)
    assert not decision.promote
    assert any("accuracy" in r for r in failed(decision.reasons))


def test_better_candidate_promoted_with_deltas() -> None:
    champion = card([True] * 85 + [False] * 15)
    candidate = card([True] * 95 + [False] * 5)
    decision = decide_promotion(candidate, champion, POLICY)
    assert decision.promote
    assert decision.deltas["accuracy"] > 0
    assert any(r.startswith("PASS McNemar") for r in decision.reasons)


def test_significantly_worse_candidate_refused() -> None:
    champion = card([True] * 100)
    candidate = card([True] * 85 + [False] * 15)  # 15 losses, 0 wins on discordant pairs
    decision = decide_promotion(candidate, champion, POLICY)
    assert not decision.promote
    assert any("McNemar" in r for r in failed(decision.reasons))
    assert decision.deltas["accuracy"] < 0


def test_small_insignificant_loss_is_not_worse() -> None:
    champion = card([True] * 92 + [False] * 8)
    candidate = card([True] * 91 + [False] * 9)
    decision = decide_promotion(candidate, champion, POLICY)
    assert decision.promote, decision.reasons
    assert not failed(decision.reasons)
    assert any(r.startswith("PASS McNemar") and "loses 1" in r for r in decision.reasons)
    assert decision.deltas["accuracy"] == pytest.approx(-0.01)


def test_tie_is_promoted_as_not_worse() -> None:
    same = [True] * 90 + [False] * 10
    decision = decide_promotion(card(same), card(same), POLICY)
    assert decision.promote
    assert any("tie" in r for r in decision.reasons)


def test_parity_failed_refused() -> None:
    decision = decide_promotion(card([True] * 95 + [False] * 5, parity_passed=False), None, POLICY)
    assert not decision.promote
    assert failed(decision.reasons) == ["FAIL ONNX parity passed"]


def test_data_not_committed_refused() -> None:
    cand = card([True] * 95 + [False] * 5, data_committed=False)
    decision = decide_promotion(cand, None, POLICY)
    assert not decision.promote
    assert any("committed" in r for r in failed(decision.reasons))


def test_data_not_validated_refused() -> None:
    cand = card([True] * 95 + [False] * 5, data_validated=False)
    decision = decide_promotion(cand, None, POLICY)
    assert not decision.promote
    assert any("validation" in r for r in failed(decision.reasons))


def test_latency_over_budget_refused() -> None:
    champion = card([True] * 90 + [False] * 10)
    candidate = card([True] * 90 + [False] * 10, p95_latency_ms=250.0)
    decision = decide_promotion(candidate, champion, POLICY)
    assert not decision.promote
    assert [r for r in failed(decision.reasons) if "latency" in r]
    assert decision.deltas["p95_latency_ms"] > 0


def test_size_over_budget_refused() -> None:
    decision = decide_promotion(card([True] * 95 + [False] * 5, size_mb=80.0), None, POLICY)
    assert not decision.promote
    assert any("size" in r for r in failed(decision.reasons))


def test_class_collapse_refused_even_when_accuracy_holds() -> None:
    champion = card([True] * 90 + [False] * 10, recall={"ham": 0.9, "spam": 0.9})
    # Imbalanced test set: predicting the majority class keeps accuracy and F1 floors but
    # spam recall collapses.
    candidate = card([True] * 90 + [False] * 10, recall={"ham": 1.0, "spam": 0.0}, macro_f1=0.75)
    decision = decide_promotion(candidate, champion, POLICY)
    assert not decision.promote
    fails = failed(decision.reasons)
    assert any("'spam'" in r and "champion" in r for r in fails)
    assert any("'spam'" in r and "floor" in r for r in fails)
    assert decision.deltas["recall_spam"] == pytest.approx(-0.9)


def test_class_collapse_without_champion_refused() -> None:
    cand = card([True] * 90 + [False] * 10, recall={"ham": 1.0, "spam": 0.0})
    decision = decide_promotion(cand, None, POLICY)
    assert not decision.promote
    assert failed(decision.reasons) == ["FAIL recall of 'spam' 0.0000 >= floor 0.1"]


def test_every_rule_is_reported_pass_or_fail() -> None:
    champion = card([True] * 90 + [False] * 10)
    decision = decide_promotion(card([True] * 90 + [False] * 10), champion, POLICY)
    assert all(r.startswith(("PASS ", "FAIL ")) for r in decision.reasons)
    assert decision.promote and not failed(decision.reasons)
    # 7 fixed checks + 2 class-recall floors + McNemar + 2 recall drops, and from TRUSTED:
    # 1 invariance floor + directional + ECE + 1 invariance drop vs the champion
    assert len(decision.reasons) == 16


def test_mismatched_test_sets_refused() -> None:
    decision = decide_promotion(card([True] * 95 + [False] * 5), card([True] * 50), POLICY)
    assert not decision.promote
    assert any("paired test impossible" in r for r in failed(decision.reasons))
