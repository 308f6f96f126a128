"""The gate's behaviour and calibration rules (tasks/release/trust.py), on hand-made figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.release.trust import trust_checks, trust_figures
from tests.params import section

pytestmark = pytest.mark.unit

POLICY = section(
    "gate", min_invariance=0.9, max_invariance_drop=0.03, min_directional=1.0, max_ece=0.05
)
GOOD = {
    "invariance_typo": 0.97,
    "invariance_case": 1.0,
    "directional_user": 1.0,
    "ece": 0.02,
    "temperature": 1.4,
}


def failed(checks: list[tuple[bool, str]]) -> list[str]:
    return [reason for ok, reason in checks if not ok]


def test_figures_inside_every_floor_pass_and_each_rule_is_named() -> None:
    checks = trust_checks(GOOD, None, POLICY)
    assert not failed(checks)
    reasons = [r for _, r in checks]
    assert any("invariance 'typo' 0.970" in r for r in reasons)
    assert any(r.startswith("calibration: ECE 0.0200") for r in reasons)
    assert any(r.startswith("behaviour: directional") for r in reasons)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"invariance_typo": 0.85}, "behaviour: invariance 'typo' 0.850 >= floor 0.9"),
        ({"directional_user": 0.5}, "behaviour: directional cases held 0.500 >= floor 1.0"),
        ({"ece": 0.2}, "calibration: ECE 0.2000 (T 1.40) <= ceiling 0.05"),
    ],
)
def test_one_figure_outside_its_floor_fails_that_rule_only(
    change: dict[str, float], named: str
) -> None:
    assert failed(trust_checks({**GOOD, **change}, None, POLICY)) == [named]


def test_a_drop_beyond_the_budget_vs_the_champion_fails_even_above_the_floor() -> None:
    champion = {**GOOD, "invariance_typo": 1.0}
    within = trust_checks({**GOOD, "invariance_typo": 0.975}, champion, POLICY)
    assert not failed(within)
    worse = failed(trust_checks({**GOOD, "invariance_typo": 0.92}, champion, POLICY))
    assert worse == ["behaviour: invariance 'typo' 0.920 vs champion 1.000: drop 0.080 <= 0.03"]


def test_a_champion_without_figures_is_not_compared_a_candidate_without_them_fails() -> None:
    assert not failed(trust_checks(GOOD, {}, POLICY))
    assert failed(trust_checks({}, GOOD, POLICY)) == [
        "behaviour: no behavioural or calibration figures recorded"
    ]
    no_ece = {k: v for k, v in GOOD.items() if k != "ece"}
    assert failed(trust_checks(no_ece, None, POLICY)) == ["calibration: no ECE recorded"]


def test_figures_are_read_from_variant_json(tmp_path: Path) -> None:
    assert trust_figures(tmp_path) == {}
    metrics = {**GOOD, "accuracy": 0.99, "throughput": 120.0}
    (tmp_path / "variant.json").write_text(json.dumps({"metrics": metrics}))
    assert trust_figures(tmp_path) == GOOD
