"""Selection is a pure function of a score table: fastest variant inside the budget wins."""

from __future__ import annotations

import pytest

from tasks.compress.select import pareto_front, pareto_markdown, select_variant

pytestmark = pytest.mark.unit


def row(acc: float, p95: float, ham: float = 0.9, spam: float = 0.9, tput: float = 100.0):
    return {
        "accuracy": acc,
        "macro_f1": acc,
        "latency_p50_ms": p95 / 2,
        "latency_p95_ms": p95,
        "throughput_b32": tput,
        "size_mb": 10.0,
        "recall_ham": ham,
        "recall_spam": spam,
    }


def pick(scores, budget=0.99, drop=0.05):
    return select_variant(scores, baseline="fp32", accuracy_budget=budget, max_recall_drop=drop)


def test_fastest_passing_variant_wins():
    scores = {"fp32": row(0.95, 10.0), "int8": row(0.945, 4.0), "distilled": row(0.95, 6.0)}
    chosen, rejected = pick(scores)
    assert chosen == "int8"
    assert set(rejected) == {"fp32", "distilled"}
    assert "slower" in rejected["distilled"] and "int8" in rejected["distilled"]


def test_accuracy_budget_breach_is_rejected_with_the_numbers():
    scores = {"fp32": row(0.95, 10.0), "int8": row(0.90, 2.0), "pruned": row(0.95, 8.0)}
    chosen, rejected = pick(scores)
    assert chosen == "pruned"
    assert rejected["int8"].startswith("outside budget")
    assert "accuracy 0.9000" in rejected["int8"] and "0.9405" in rejected["int8"]


def test_budget_is_relative_to_the_baseline():
    scores = {"fp32": row(0.95, 10.0), "int8": row(0.90, 2.0)}
    assert pick(scores, budget=0.94)[0] == "int8"  # 0.90 >= 0.94 * 0.95
    assert pick(scores, budget=0.96)[0] == "fp32"


def test_recall_collapse_is_rejected_even_when_accuracy_holds():
    scores = {
        "fp32": row(0.95, 10.0, ham=0.96, spam=0.90),
        "int8": row(0.95, 2.0, ham=1.0, spam=0.80),
    }
    chosen, rejected = pick(scores)
    assert chosen == "fp32"
    assert "recall_spam dropped 0.1000" in rejected["int8"]
    assert "recall_ham" not in rejected["int8"]  # a recall that rose is no problem


def test_small_recall_drop_inside_tolerance_passes():
    scores = {"fp32": row(0.95, 10.0, spam=0.90), "int8": row(0.95, 2.0, spam=0.86)}
    assert pick(scores)[0] == "int8"


def test_none_passing_falls_back_to_fp32_with_every_reason():
    scores = {"fp32": row(0.95, 10.0), "a": row(0.5, 1.0, spam=0.0), "b": row(0.8, 2.0)}
    chosen, rejected = pick(scores)
    assert chosen == "fp32"
    assert set(rejected) == {"a", "b"}
    assert all(r.startswith("outside budget") for r in rejected.values())


def test_fp32_fastest_stays_chosen():
    scores = {"fp32": row(0.95, 1.0), "int8": row(0.95, 2.0)}
    assert pick(scores) == (
        "fp32",
        {"int8": "inside budget but slower: latency_p95_ms 2.000 ms vs 1.000 ms for 'fp32'"},
    )


def test_missing_baseline_or_speed_is_reported():
    with pytest.raises(KeyError, match="fp32"):
        pick({"int8": row(0.9, 1.0)})
    bad = row(0.95, 1.0)
    del bad["latency_p95_ms"]
    chosen, rejected = pick({"fp32": row(0.95, 10.0), "x": bad})
    assert chosen == "fp32" and "latency_p95_ms missing" in rejected["x"]


def test_ties_on_p95_break_on_throughput():
    scores = {"fp32": row(0.95, 10.0), "a": row(0.95, 2.0, tput=100), "b": row(0.95, 2.0, tput=300)}
    assert pick(scores)[0] == "b"


def test_pareto_front_and_table():
    scores = {"fp32": row(0.95, 10.0), "int8": row(0.94, 4.0), "bad": row(0.90, 6.0)}
    assert pareto_front(scores) == {"fp32", "int8"}
    chosen, rejected = pick(scores, budget=0.98)
    table = pareto_markdown(scores, chosen, rejected)
    lines = table.strip().splitlines()
    assert lines[2].startswith("| int8 ") and "**chosen**" in lines[2]
    assert len(lines) == 2 + len(scores)
