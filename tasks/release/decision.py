"""The promotion decision: may the candidate replace the champion? Pure, over two scorecards.

`decide_promotion` does no I/O (tasks/release/gate.py scores the models), so every rule is
unit-tested on hand-made scorecards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import binomtest

from tasks.release.trust import trust_checks
from tuneline.config import GateParams


@dataclass(frozen=True)
class Scorecard:
    """What the gate knows about one model on the pinned test split."""

    correct: tuple[bool, ...]  # per test example, in file order
    accuracy: float
    macro_f1: float
    recall: dict[str, float]  # per class name
    p95_latency_ms: float
    size_mb: float
    parity_passed: bool
    data_validated: bool
    data_committed: bool
    version: str | None = None
    trust: dict[str, float] = field(default_factory=dict)  # behaviour + calibration figures


@dataclass(frozen=True)
class Decision:
    """promote: the verdict; reasons: every check, "PASS ..." or "FAIL ..."; deltas: cand-champ."""

    promote: bool
    reasons: tuple[str, ...]
    deltas: dict[str, float] = field(default_factory=dict)


def decide_promotion(
    candidate: Scorecard, champion: Scorecard | None, policy: GateParams
) -> Decision:
    """Apply every promotion rule and record each outcome, pass or fail.

    Rules: data validated and committed; parity passed; accuracy and macro-F1 at or above the
    floors; every class recall at or above `min_class_recall`; p95 latency and size within
    budget; the behaviour and calibration rules (tasks/release/trust.py); and with a
    champion: not worse by a one-sided exact McNemar test (binomial test on the discordant
    pairs, level `alpha`) and no class recall down by more than `max_recall_drop`.

    Args:
        candidate: the candidate's scorecard.
        champion: the current champion's, or None when there is none.
        policy: the floors, budgets and test level (`params.gate`).

    Returns:
        Decision; `promote` is True only when every rule passed.
    """
    checks: list[tuple[bool, str]] = [
        (candidate.data_validated, "data validation passed"),
        (candidate.data_committed, "data version committed (dvc status clean for the splits)"),
        (candidate.parity_passed, "ONNX parity passed"),
        (
            candidate.accuracy >= policy.min_accuracy,
            f"accuracy {candidate.accuracy:.4f} >= floor {policy.min_accuracy}",
        ),
        (
            candidate.macro_f1 >= policy.min_macro_f1,
            f"macro-F1 {candidate.macro_f1:.4f} >= floor {policy.min_macro_f1}",
        ),
        (
            candidate.p95_latency_ms <= policy.max_p95_latency_ms,
            f"p95 latency {candidate.p95_latency_ms:.2f} ms <= {policy.max_p95_latency_ms} ms",
        ),
        (
            candidate.size_mb <= policy.max_size_mb,
            f"size {candidate.size_mb:.2f} MB <= {policy.max_size_mb} MB",
        ),
    ]
    for name, value in sorted(candidate.recall.items()):
        checks.append(
            (
                value >= policy.min_class_recall,
                f"recall of '{name}' {value:.4f} >= floor {policy.min_class_recall}",
            )
        )
    checks += trust_checks(candidate.trust, champion.trust if champion else None, policy)
    deltas: dict[str, float] = {}
    if champion is None:
        checks.append((True, "no champion: floors and checks alone decide"))
    else:
        deltas = {
            "accuracy": candidate.accuracy - champion.accuracy,
            "macro_f1": candidate.macro_f1 - champion.macro_f1,
            "p95_latency_ms": candidate.p95_latency_ms - champion.p95_latency_ms,
            "size_mb": candidate.size_mb - champion.size_mb,
        }
        checks.append(_mcnemar(candidate.correct, champion.correct, policy.alpha))
        for name, before in sorted(champion.recall.items()):
            after = candidate.recall.get(name, 0.0)
            deltas[f"recall_{name}"] = after - before
            checks.append(
                (
                    before - after <= policy.max_recall_drop,
                    f"recall of '{name}' {after:.4f} vs champion {before:.4f}: "
                    f"drop {max(0.0, before - after):.4f} <= {policy.max_recall_drop}",
                )
            )
    reasons = tuple(f"{'PASS' if ok else 'FAIL'} {text}" for ok, text in checks)
    return Decision(all(ok for ok, _ in checks), reasons, deltas)


def _mcnemar(cand: tuple[bool, ...], champ: tuple[bool, ...], alpha: float) -> tuple[bool, str]:
    if len(cand) != len(champ):
        return False, f"paired test impossible: {len(cand)} vs {len(champ)} test examples"
    c = np.asarray(cand, dtype=bool)
    h = np.asarray(champ, dtype=bool)
    wins = int(np.sum(c & ~h))  # candidate right, champion wrong
    losses = int(np.sum(~c & h))
    if wins + losses == 0:
        return True, "McNemar: no discordant pairs (tie), not worse than champion"
    # H1: the candidate is wrong more often on the pairs where the two disagree.
    p = float(binomtest(losses, wins + losses, 0.5, alternative="greater").pvalue)
    return (
        p >= alpha,
        f"McNemar exact: candidate wins {wins}, loses {losses}, p(worse)={p:.4g} "
        f"{'>=' if p >= alpha else '<'} alpha {alpha}",
    )
