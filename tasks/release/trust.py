"""The gate's behaviour and calibration rules, over the figures a candidate carries.

Every compression candidate is calibrated and put through the behavioural suite when it is
built (tasks/behaviour/suite.py), through the runtime that serves it; the figures travel in
its variant.json "metrics" (and its MLflow run). Here they are judged: pure, no I/O.
"""

from __future__ import annotations

import json
from pathlib import Path

from tuneline.config import GateParams

INVARIANCE = "invariance_"
DIRECTIONAL = "directional_user"
ECE = "ece"
TRUST_KEYS = (DIRECTIONAL, ECE, "ece_uncalibrated", "temperature")


def trust_figures(variant_dir: Path | str) -> dict[str, float]:
    """The behaviour and calibration figures recorded in a variant's variant.json.

    Args:
        variant_dir: a downloaded or built variant directory.

    Returns:
        invariance_*, directional_user, ece, ece_uncalibrated, temperature (what it has; {}
        for a variant built before the suite existed).
    """
    path = Path(variant_dir) / "variant.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text(encoding="utf-8")).get("metrics") or {}
    return {k: float(v) for k, v in metrics.items() if k.startswith(INVARIANCE) or k in TRUST_KEYS}


def trust_checks(
    candidate: dict[str, float], champion: dict[str, float] | None, policy: GateParams
) -> list[tuple[bool, str]]:
    """Behaviour and calibration rules, each a (passed, named reason).

    Rules: every invariance rate >= gate.min_invariance; the users' directional cases held
    >= gate.min_directional; test ECE as served <= gate.max_ece; and, with a champion that
    has figures, no invariance rate more than gate.max_invariance_drop below the champion's.

    Args:
        candidate: the candidate's figures (`trust_figures`).
        champion: the champion's, or None when there is no champion.
        policy: `params.gate`.

    Returns:
        The checks; a candidate without figures fails one named check.
    """
    if not candidate:
        return [(False, "behaviour: no behavioural or calibration figures recorded")]
    checks: list[tuple[bool, str]] = []
    rates = {
        k.removeprefix(INVARIANCE): v
        for k, v in sorted(candidate.items())
        if k.startswith(INVARIANCE)
    }
    for name, rate in rates.items():
        checks.append(
            (
                rate >= policy.min_invariance,
                f"behaviour: invariance '{name}' {rate:.3f} >= floor {policy.min_invariance}",
            )
        )
    if DIRECTIONAL in candidate:
        held = candidate[DIRECTIONAL]
        checks.append(
            (
                held >= policy.min_directional,
                f"behaviour: directional cases held {held:.3f} >= floor {policy.min_directional}",
            )
        )
    if ECE in candidate:
        value = candidate[ECE]
        checks.append(
            (
                value <= policy.max_ece,
                f"calibration: ECE {value:.4f} (T {candidate.get('temperature', 1.0):.2f}) "
                f"<= ceiling {policy.max_ece}",
            )
        )
    else:
        checks.append((False, "calibration: no ECE recorded"))
    if champion:
        for name, rate in rates.items():
            before = champion.get(f"{INVARIANCE}{name}")
            if before is None:
                continue
            checks.append(
                (
                    before - rate <= policy.max_invariance_drop,
                    f"behaviour: invariance '{name}' {rate:.3f} vs champion {before:.3f}: drop "
                    f"{max(0.0, before - rate):.3f} <= {policy.max_invariance_drop}",
                )
            )
    return checks
