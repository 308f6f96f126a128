"""Choosing the variant to serve: the fastest one inside the accuracy budget (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping

SPEED_KEY = "latency_p95_ms"  # lower is faster: p95 latency at batch 1
TIEBREAK_KEY = "throughput_b32"  # higher is better, used only on equal p95
ACCURACY_KEY = "accuracy"
RECALL_PREFIX = "recall_"


def _recall_drops(
    scores: Mapping[str, float], baseline: Mapping[str, float], max_drop: float
) -> list[str]:
    problems = []
    for key, base_value in sorted(baseline.items()):
        if not key.startswith(RECALL_PREFIX):
            continue
        value = scores.get(key)
        if value is None:
            problems.append(f"{key} missing")
        elif base_value - value > max_drop + 1e-12:
            problems.append(
                f"{key} dropped {base_value - value:.4f} ({base_value:.4f} -> {value:.4f}) "
                f"> max_recall_drop {max_drop:.4f}"
            )
    return problems


def select_variant(
    scores: Mapping[str, Mapping[str, float]],
    *,
    baseline: str,
    accuracy_budget: float,
    max_recall_drop: float,
) -> tuple[str, dict[str, str]]:
    """Pick the fastest variant (lowest p95 latency at batch 1) that stays inside the budget.

    A variant passes when its accuracy >= accuracy_budget x the baseline's accuracy and no
    class recall fell by more than max_recall_drop from the baseline's. The baseline (the FP32
    ONNX) always passes, so when nothing else does it is chosen.

    Args:
        scores: variant name -> metrics; each needs "accuracy", "latency_p95_ms" and the
            "recall_<label>" keys of the baseline ("throughput_b32" breaks ties).
        baseline: name of the FP32 variant in `scores`.
        accuracy_budget: share of the baseline accuracy a variant must keep (e.g. 0.99).
        max_recall_drop: largest allowed fall of any class recall (absolute, e.g. 0.05).

    Returns:
        (chosen name, {rejected name: reason}) where every variant other than the chosen one
        has a reason.

    Raises:
        KeyError: the baseline is not in `scores`.
    """
    if baseline not in scores:
        raise KeyError(f"baseline variant '{baseline}' not in scores {sorted(scores)}")
    base = scores[baseline]
    floor = accuracy_budget * base[ACCURACY_KEY]
    rejected: dict[str, str] = {}
    passing: list[str] = []
    for name, metrics in scores.items():
        if name == baseline:
            passing.append(name)
            continue
        problems = []
        accuracy = metrics.get(ACCURACY_KEY, 0.0)
        if accuracy < floor - 1e-12:
            problems.append(
                f"accuracy {accuracy:.4f} < budget {accuracy_budget:g} x baseline "
                f"{base[ACCURACY_KEY]:.4f} = {floor:.4f}"
            )
        problems += _recall_drops(metrics, base, max_recall_drop)
        if SPEED_KEY not in metrics:
            problems.append(f"{SPEED_KEY} missing")
        if problems:
            rejected[name] = "outside budget: " + "; ".join(problems)
        else:
            passing.append(name)

    def speed(name: str) -> tuple[float, float, str]:
        m = scores[name]
        return (m[SPEED_KEY], -m.get(TIEBREAK_KEY, 0.0), name)

    chosen = min(passing, key=speed)
    for name in passing:
        if name != chosen:
            rejected[name] = (
                f"inside budget but slower: {SPEED_KEY} {scores[name][SPEED_KEY]:.3f} ms vs "
                f"{scores[chosen][SPEED_KEY]:.3f} ms for '{chosen}'"
            )
    return chosen, rejected


def pareto_front(
    scores: Mapping[str, Mapping[str, float]],
    speed_key: str = SPEED_KEY,
    accuracy_key: str = ACCURACY_KEY,
) -> set[str]:
    """Variants no other variant beats on both latency (lower) and accuracy (higher)."""
    front = set()
    for name, m in scores.items():
        dominated = any(
            o[speed_key] <= m[speed_key]
            and o[accuracy_key] >= m[accuracy_key]
            and (o[speed_key] < m[speed_key] or o[accuracy_key] > m[accuracy_key])
            for other, o in scores.items()
            if other != name
        )
        if not dominated:
            front.add(name)
    return front


def pareto_markdown(
    scores: Mapping[str, Mapping[str, float]], chosen: str, rejected: Mapping[str, str]
) -> str:
    """A markdown table of every variant, fastest first, marking the front and the choice."""
    front = pareto_front(scores)
    lines = [
        "| variant | accuracy | macro-F1 | p50 ms (b1) | p95 ms (b1) | rows/s (b32) | size MB "
        "| pareto | decision |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: | --- |",
    ]
    for name in sorted(scores, key=lambda n: scores[n][SPEED_KEY]):
        m = scores[name]
        decision = "**chosen**" if name == chosen else rejected.get(name, "")
        lines.append(
            f"| {name} | {m.get('accuracy', 0):.4f} | {m.get('macro_f1', 0):.4f} "
            f"| {m.get('latency_p50_ms', 0):.3f} | {m.get(SPEED_KEY, 0):.3f} "
            f"| {m.get(TIEBREAK_KEY, 0):.1f} | {m.get('size_mb', 0):.2f} "
            f"| {'yes' if name in front else ''} | {decision} |"
        )
    return "\n".join(lines) + "\n"
