"""Where a version's gate decision is kept: its tags, which the MLflow UI shows on the version
page, and which the webhook receiver, `tuneline watch` and `tuneline serve` read back.
"""

from __future__ import annotations

from collections.abc import Mapping

GATE_TAG = "tuneline.gate"  # passed | refused (pending while a promotion runs)
REASONS_TAG = "tuneline.gate.reasons"  # every check, FAIL ones first, one a line
COMPARED_TAG = "tuneline.gate.champion"  # the champion the gate compared with ("none")
OVERRIDE_TAG = "tuneline.gate.override"  # a hand-set @champion on it was undone / allowed
REQUEST_TAG = "tuneline.promote"  # set to REQUESTED (UI) to start the gate; then the outcome
REQUESTED = "requested"
PASSED, REFUSED, PENDING = "passed", "refused", "pending"
_LEGACY_GATE_TAG = "gate"  # written by gates before these tags existed


def has_passing_decision(tags: Mapping[str, str]) -> bool:
    """Whether a version's tags record a gate that passed it (what @champion requires).

    Args:
        tags: the version's tags.

    Returns:
        True for `tuneline.gate = passed` (or the older `gate = passed` of earlier gates
        when no `tuneline.gate` is set).
    """
    if GATE_TAG in tags:
        return tags[GATE_TAG] == PASSED
    return tags.get(_LEGACY_GATE_TAG) == PASSED
