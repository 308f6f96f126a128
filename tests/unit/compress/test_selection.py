"""Selection (tasks/compress/select.py) is a pure function of a score table and the parent's
PyTorch metrics: the fastest candidate inside the accuracy budget wins, by compress.objective."""

from __future__ import annotations

from functools import cache

import pytest

from tasks.compress.select import (
    budget_problems,
    objective_key,
    pareto_front,
    pareto_markdown,
    ranked,
    select_candidate,
)
from tests.params import params
from tuneline.config import CompressParams
from tuneline.errors import CompressionError

pytestmark = pytest.mark.unit

# the parent's own PyTorch metrics on the test split: the budget's base (no speed: not timed)
REFERENCE = {"accuracy": 0.95, "macro_f1": 0.93, "recall_ham": 0.96, "recall_spam": 0.90}


def row(
    acc: float = 0.95,
    p95: float = 5.0,
    tput: float = 100.0,
    ham: float = 0.96,
    spam: float = 0.90,
) -> dict[str, float]:
    return {
        "accuracy": acc,
        "macro_f1": acc,
        "latency_p50_ms": p95 / 2,
        "latency_p95_ms": p95,
        "throughput": tput,
        "size_mb": 10.0,
        "recall_ham": ham,
        "recall_spam": spam,
    }


@cache
def settings(
    objective: str = "throughput", budget: float = 0.99, drop: float = 0.05
) -> CompressParams:
    overrides = {
        "compress.objective": objective,
        "compress.accuracy_budget": budget,
        "compress.max_recall_drop": drop,
    }
    return params("smoke", **overrides).compress


def pick(scores, reference=REFERENCE, **keys):
    return select_candidate(scores, reference, settings(**keys))


def test_objective_names_its_score():
    assert objective_key("throughput") == "throughput"
    assert objective_key("latency") == "latency_p95_ms"


# batchy moves more rows/s at the serving batch size, snappy answers one text sooner
SPEEDS = {"batchy": row(p95=5.0, tput=300.0), "snappy": row(p95=2.0, tput=200.0)}


def test_the_highest_throughput_inside_the_budget_wins_for_objective_throughput():
    scores = {**SPEEDS, "slow": row(p95=9.0, tput=100.0)}
    chosen, rejected = pick(scores)
    assert chosen == "batchy"
    assert set(rejected) == {"snappy", "slow"}
    why = rejected["snappy"]
    assert why.startswith("inside budget but slower") and "'batchy'" in why
    assert "throughput 200.00 rows/s" in why and "300.00 rows/s" in why
    assert ranked(scores, REFERENCE, settings()) == ["batchy", "snappy", "slow"]


def test_the_lowest_p95_inside_the_budget_wins_for_objective_latency():
    scores = {**SPEEDS, "slow": row(p95=9.0, tput=100.0)}
    chosen, rejected = pick(scores, objective="latency")
    assert chosen == "snappy"
    why = rejected["batchy"]
    assert why.startswith("inside budget but slower") and "'snappy'" in why
    assert "latency_p95_ms 5.00 ms" in why and "2.00 ms" in why
    assert ranked(scores, REFERENCE, settings("latency")) == ["snappy", "batchy", "slow"]


def test_a_faster_candidate_outside_the_accuracy_budget_loses_with_the_numbers():
    scores = {"fast": row(acc=0.90, tput=900.0), "ok": row(acc=0.95, tput=100.0)}
    chosen, rejected = pick(scores, budget=0.96)
    assert chosen == "ok"
    why = rejected["fast"]
    assert why.startswith("outside budget: ")
    # 0.96 x the parent's 0.95 = 0.912
    assert "accuracy 0.9000" in why and "0.9500" in why and "0.9120" in why


def test_the_accuracy_budget_is_relative_to_the_reference():
    scores = {"fast": row(acc=0.90, tput=900.0), "ok": row(acc=0.95, tput=100.0)}
    assert pick(scores, budget=0.94)[0] == "fast"  # 0.90 >= 0.94 x 0.95 = 0.893
    assert pick(scores, budget=0.96)[0] == "ok"  # 0.90 < 0.912
    weaker_parent = {**REFERENCE, "accuracy": 0.92}
    assert pick(scores, weaker_parent, budget=0.96)[0] == "fast"  # 0.90 >= 0.8832


def test_matching_the_budget_exactly_is_inside():
    assert budget_problems(row(acc=0.95), REFERENCE, settings(budget=1.0)) == []


def test_a_recall_drop_beyond_the_tolerance_loses_even_when_accuracy_holds():
    scores = {"fast": row(tput=900.0, ham=1.0, spam=0.80), "ok": row(tput=100.0)}
    chosen, rejected = pick(scores)
    assert chosen == "ok"
    why = rejected["fast"]
    assert "recall_spam dropped 0.1000 (0.9000 -> 0.8000) > max_recall_drop 0.0500" in why
    assert "recall_ham" not in why  # a recall that rose is no problem
    assert "accuracy" not in why


def test_the_recall_drop_is_measured_from_the_reference():
    scores = {"fast": row(tput=900.0, spam=0.86), "ok": row(tput=100.0)}
    assert pick(scores)[0] == "fast"  # 0.90 -> 0.86 is inside 0.05
    # the same 0.86 is 0.09 below a parent at 0.95: outside
    assert pick(scores, {**REFERENCE, "recall_spam": 0.95})[0] == "ok"


def test_a_missing_recall_or_speed_is_a_problem_not_a_crash():
    no_spam = row()
    del no_spam["recall_spam"]
    no_speed = row()
    del no_speed["throughput"]
    assert budget_problems(no_spam, REFERENCE, settings()) == ["recall_spam missing"]
    assert budget_problems(no_speed, REFERENCE, settings()) == ["throughput missing"]
    assert budget_problems(no_speed, REFERENCE, settings("latency")) == []


def test_nothing_inside_the_budget_raises_with_every_candidate_reason():
    scores = {
        "inaccurate": row(acc=0.50, tput=900.0),
        "collapsing": row(tput=500.0, spam=0.10),
    }
    with pytest.raises(CompressionError) as err:
        pick(scores)
    assert len(err.value.reasons) == len(scores)
    by_name = dict(reason.split(": ", 1) for reason in err.value.reasons)
    assert set(by_name) == set(scores)
    assert "accuracy 0.5000" in by_name["inaccurate"]
    assert "recall_spam dropped 0.8000" in by_name["collapsing"]
    assert all(why.startswith("outside budget") for why in by_name.values())
    assert all(reason in str(err.value) for reason in err.value.reasons)


def test_no_candidate_at_all_raises():
    with pytest.raises(CompressionError, match="no candidate passed parity"):
        pick({})


def test_a_throughput_tie_breaks_on_lower_p95_then_on_name():
    scores = {"b": row(p95=3.0), "a": row(p95=4.0), "c": row(p95=3.0), "slow": row(tput=50.0)}
    assert ranked(scores, REFERENCE, settings()) == ["b", "c", "a", "slow"]
    assert pick(dict(reversed(scores.items())))[0] == "b"  # not the table's order


def test_a_full_tie_breaks_on_name_for_either_objective():
    scores = {"z": row(), "m": row(), "a": row()}
    for objective in ("throughput", "latency"):
        assert ranked(scores, REFERENCE, settings(objective)) == ["a", "m", "z"]


def test_pareto_front_on_throughput_and_accuracy():
    scores = {
        "fast": row(acc=0.90, tput=300.0),
        "mid": row(acc=0.93, tput=200.0),
        "beaten": row(acc=0.89, tput=200.0),  # fast is faster and more accurate
        "accurate": row(acc=0.95, tput=100.0),
        "worst": row(acc=0.90, tput=100.0),  # accurate is as fast and more accurate
    }
    assert pareto_front(scores, "throughput") == {"fast", "mid", "accurate"}


def test_pareto_front_on_latency_and_accuracy_follows_the_objective():
    assert pareto_front(SPEEDS, "throughput") == {"batchy"}
    assert pareto_front(SPEEDS, "latency") == {"snappy"}
    scores = {"x": row(acc=0.95, p95=2.0), "y": row(acc=0.96, p95=3.0), "z": row(acc=0.94, p95=3.0)}
    assert pareto_front(scores, "latency") == {"x", "y"}


def test_equal_points_are_both_on_the_front():
    assert pareto_front({"a": row(), "b": row()}, "throughput") == {"a", "b"}


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


COORDS = {
    "parent_int8_dynamic_ort": ("parent", "int8_dynamic", "onnxruntime"),
    "parent_fp32_ort": ("parent", "fp32", "onnxruntime"),
    "parent_int8_static_ov": ("parent", "int8_static", "openvino"),
    "distilled_fp32_ort": ("distilled", "fp32", "onnxruntime"),
    "pruned_fp32_ort": ("pruned", "fp32", "onnxruntime"),
    "parent_bf16_ov": ("parent", "bf16", "openvino"),
}
ROWS = {
    name: {"structure": s, "precision": p, "runtime": r, "fusions": "all expected"}
    for name, (s, p, r) in COORDS.items()
}
# the dropped ones are the fastest and the most accurate: counted, they would dominate the rest
TABLE_SCORES = {
    "parent_int8_dynamic_ort": row(acc=0.94, p95=2.0, tput=300.0),
    "parent_fp32_ort": row(acc=0.95, p95=5.0, tput=100.0),
    "parent_int8_static_ov": row(acc=0.99, p95=1.0, tput=900.0),
    "distilled_fp32_ort": row(acc=0.99, p95=1.5, tput=800.0, spam=0.0),
}
DECISIONS = {
    "parent_fp32_ort": "inside budget but slower: throughput 100.00 rows/s",
    "parent_int8_static_ov": "parity: agreement 0.9000 < 0.97",
    "distilled_fp32_ort": "collapsed: recall_spam 0.000 < gate.min_class_recall 0.1",
    "pruned_fp32_ort": "build failed: ValueError: shape a|b",
    "parent_bf16_ov": "skipped: this CPU has no BF16 compute (AVX-512 BF16 / AMX)",
}


@pytest.mark.parametrize("objective", ["throughput", "latency"])
def test_pareto_table_lists_the_reference_and_every_candidate_with_its_decision(objective):
    chosen = "parent_int8_dynamic_ort"
    table = pareto_markdown(ROWS, TABLE_SCORES, chosen, DECISIONS, REFERENCE, objective)
    lines = table.strip().splitlines()
    header = cells(lines[0])
    assert all(len(cells(line)) == len(header) for line in lines)  # a "|" in a reason is escaped
    reference = dict(zip(header, cells(lines[2]), strict=True))
    assert reference["candidate"] == "PyTorch parent" and reference["decision"] == "reference"
    assert reference["accuracy"] == "0.9500" and reference["macro-F1"] == "0.9300"

    body = [dict(zip(header, cells(line), strict=True)) for line in lines[3:]]
    assert sorted(r["candidate"] for r in body) == sorted(ROWS)  # one row each
    by_name = {r["candidate"]: r for r in body}
    assert by_name[chosen]["decision"] == "**chosen**" and by_name[chosen]["pareto"] == "yes"
    for name, why in DECISIONS.items():
        assert by_name[name]["decision"] == why.replace("|", "/")
        assert by_name[name]["structure"] == COORDS[name][0]
    dropped = ("parent_int8_static_ov", "distilled_fp32_ort")
    assert all(by_name[name]["pareto"] == "" for name in dropped)
    for name in ("pruned_fp32_ort", "parent_bf16_ov"):  # not scored: no numbers
        assert by_name[name]["accuracy"] == "" and by_name[name]["pareto"] == ""
    # scored ones fastest first (by the objective), the unscored ones after them
    scored = [r["candidate"] for r in body[: len(TABLE_SCORES)]]
    assert scored == ["parent_int8_static_ov", "distilled_fp32_ort", chosen, "parent_fp32_ort"]
    assert {r["candidate"] for r in body[len(TABLE_SCORES) :]} == set(ROWS) - set(TABLE_SCORES)


def test_pareto_table_marks_the_front_among_the_servable_ones():
    chosen = "parent_int8_dynamic_ort"
    table = pareto_markdown(ROWS, TABLE_SCORES, chosen, DECISIONS, REFERENCE, "throughput")
    lines = table.strip().splitlines()
    header = cells(lines[0])
    pareto = {
        cells(line)[0]: dict(zip(header, cells(line), strict=True))["pareto"] for line in lines
    }
    # fp32 is slower but more accurate than the chosen int8: both on the front
    assert {name for name, mark in pareto.items() if mark == "yes"} == {chosen, "parent_fp32_ort"}
