"""Choosing the candidate to serve: the fastest one inside the accuracy budget (pure functions).

The budget is relative to the parent's own PyTorch metrics on the test split: accuracy >=
compress.accuracy_budget x the parent's, and no class recall more than compress.max_recall_drop
below the parent's. "Fastest" is compress.objective: "throughput" (rows/s at the serving batch
size on the test texts' real lengths, higher is better) or "latency" (p95 at batch 1, lower).
"""

from __future__ import annotations

from collections.abc import Mapping

from tuneline.config import CompressParams
from tuneline.errors import CompressionError

ACCURACY_KEY = "accuracy"
LATENCY_KEY = "latency_p95_ms"
THROUGHPUT_KEY = "throughput"
RECALL_PREFIX = "recall_"
Scores = Mapping[str, Mapping[str, float]]


def objective_key(objective: str) -> str:
    """The score the objective ranks on: "throughput" or "latency_p95_ms"."""
    return THROUGHPUT_KEY if objective == "throughput" else LATENCY_KEY


def _speed(metrics: Mapping[str, float], objective: str) -> float:
    """Larger is faster, whichever the objective."""
    value = metrics[objective_key(objective)]
    return value if objective == "throughput" else -value


def budget_problems(
    metrics: Mapping[str, float], reference: Mapping[str, float], cp: CompressParams
) -> list[str]:
    """Why a candidate is outside the accuracy budget (empty: inside).

    Args:
        metrics: the candidate's scores ("accuracy", "recall_<label>", the objective's key).
        reference: the parent's PyTorch metrics.
        cp: accuracy_budget, max_recall_drop, objective.

    Returns:
        One sentence per problem, with the numbers.
    """
    problems = []
    floor = cp.accuracy_budget * reference[ACCURACY_KEY]
    accuracy = metrics.get(ACCURACY_KEY, 0.0)
    if accuracy < floor - 1e-12:
        problems.append(
            f"accuracy {accuracy:.4f} < budget {cp.accuracy_budget:g} x parent "
            f"{reference[ACCURACY_KEY]:.4f} = {floor:.4f}"
        )
    for key, base in sorted(reference.items()):
        if not key.startswith(RECALL_PREFIX):
            continue
        value = metrics.get(key)
        if value is None:
            problems.append(f"{key} missing")
        elif base - value > cp.max_recall_drop + 1e-12:
            problems.append(
                f"{key} dropped {base - value:.4f} ({base:.4f} -> {value:.4f}) "
                f"> max_recall_drop {cp.max_recall_drop:.4f}"
            )
    if objective_key(cp.objective) not in metrics:
        problems.append(f"{objective_key(cp.objective)} missing")
    return problems


def ranked(scores: Scores, reference: Mapping[str, float], cp: CompressParams) -> list[str]:
    """The candidates inside the budget, fastest first (ties: the other speed, then name)."""
    inside = [n for n, m in scores.items() if not budget_problems(m, reference, cp)]

    def order(name: str) -> tuple[float, float, str]:
        m = scores[name]
        other = (
            m.get(LATENCY_KEY, float("inf"))
            if cp.objective == "throughput"
            else -m.get(THROUGHPUT_KEY, 0.0)
        )
        return (-_speed(m, cp.objective), other, name)

    return sorted(inside, key=order)


def select_candidate(
    scores: Scores, reference: Mapping[str, float], cp: CompressParams
) -> tuple[str, dict[str, str]]:
    """Pick the fastest candidate inside the budget.

    Args:
        scores: candidate name -> scores, for the candidates that passed parity.
        reference: the parent's PyTorch metrics on the same test split.
        cp: accuracy_budget, max_recall_drop, objective.

    Returns:
        (chosen name, {every other name: why it lost}).

    Raises:
        CompressionError: no candidate is inside the budget (each one's reasons listed).
    """
    rejected = {
        n: "outside budget: " + "; ".join(problems)
        for n, m in scores.items()
        if (problems := budget_problems(m, reference, cp))
    }
    order = ranked(scores, reference, cp)
    if not order:
        lines = [f"{n}: {why}" for n, why in rejected.items()] or ["no candidate passed parity"]
        raise CompressionError("no compressed candidate is inside the budget", lines)
    chosen, key = order[0], objective_key(cp.objective)
    unit = "rows/s" if cp.objective == "throughput" else "ms"
    for name in order[1:]:
        rejected[name] = (
            f"inside budget but slower: {key} {scores[name][key]:.2f} {unit} vs "
            f"{scores[chosen][key]:.2f} {unit} for '{chosen}'"
        )
    return chosen, rejected


def pareto_front(scores: Scores, objective: str) -> set[str]:
    """Candidates no other candidate beats on both speed (the objective) and accuracy."""
    front = set()
    for name, m in scores.items():
        speed, acc = _speed(m, objective), m[ACCURACY_KEY]
        dominated = any(
            _speed(o, objective) >= speed
            and o[ACCURACY_KEY] >= acc
            and (_speed(o, objective) > speed or o[ACCURACY_KEY] > acc)
            for other, o in scores.items()
            if other != name
        )
        if not dominated:
            front.add(name)
    return front


def pareto_markdown(
    rows: Mapping[str, Mapping[str, object]],
    scores: Scores,
    chosen: str,
    decisions: Mapping[str, str],
    reference: Mapping[str, float],
    objective: str,
) -> str:
    """A markdown table of every candidate, fastest first, then the ones without scores.

    Args:
        rows: candidate name -> {"structure", "precision", "runtime", "fusions"} (every
            candidate considered: scored, dropped, failed or skipped).
        scores: the scored ones' scores (dropped ones included).
        chosen: the chosen candidate.
        decisions: name -> why it was not chosen (dropped, failed, skipped, slower).
        reference: the parent's PyTorch metrics (the first row).
        objective: compress.objective (sets the order and the front).

    Returns:
        The table, one line per candidate.
    """
    passing = {n: m for n, m in scores.items() if n == chosen or not _is_drop(decisions.get(n))}
    front = pareto_front(passing, objective) if passing else set()
    lines = [
        "| candidate | structure | precision | runtime | accuracy | macro-F1 | p95 ms (b1) "
        "| rows/s (serving batch) | size MB | fusions | pareto | decision |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | :---: | --- |",
        f"| PyTorch parent | parent | fp32 | torch | {reference.get(ACCURACY_KEY, 0):.4f} "
        f"| {reference.get('macro_f1', 0):.4f} | | | | | | reference |",
    ]
    key = objective_key(objective)  # candidates dropped before timing have no speed: last
    order = sorted(
        scores, key=lambda n: -_speed(scores[n], objective) if key in scores[n] else 1e300
    )
    order += [n for n in rows if n not in scores]
    for name in order:
        row, m = rows.get(name, {}), scores.get(name)
        decision = "**chosen**" if name == chosen else decisions.get(name, "")
        cells = [("accuracy", ".4f"), ("macro_f1", ".4f"), (LATENCY_KEY, ".2f")]
        cells += [(THROUGHPUT_KEY, ".1f"), ("size_mb", ".1f")]
        numbers = " | ".join(
            format(m[k], spec) if m is not None and k in m else "" for k, spec in cells
        )
        lines.append(
            f"| {name} | {row.get('structure', '')} | {row.get('precision', '')} "
            f"| {row.get('runtime', '')} | {numbers} | {row.get('fusions', '')} "
            f"| {'yes' if name in front else ''} | {decision.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


DROPPED_PREFIXES = ("parity:", "collapsed:")  # a scored candidate that may not be served


def _is_drop(decision: str | None) -> bool:
    return bool(decision) and str(decision).startswith(DROPPED_PREFIXES)
