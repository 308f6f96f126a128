"""Promote: move @champion to a gated, smoke-tested version by compare-and-set.

`champion` moves only if it still points where the gate read it (see
tuneline.registry.move_champion: re-read and set under a file lock). A candidate that already
is champion, or that champion was rolled back from, is settled here without a gate. Every
outcome is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefect import task

from tasks.release.card import Verdict
from tasks.release.gate import GateResult
from tasks.release.outcome import measured, publish_outcome
from tasks.release.smoke import SmokeResult
from tuneline import audit, registry
from tuneline.decisions import PASSED, REFUSED


@dataclass(frozen=True)
class PromotionResult:
    """Final outcome of one promotion attempt (a value, never an exception trace)."""

    outcome: Literal["promoted", "refused", "lost_race", "unchanged", "held"]
    name: str
    version: str
    champion: str | None  # champion after this attempt
    previous_champion: str | None  # champion the gate was run against
    reasons: tuple[str, ...]
    bento_tag: str | None = None


@task
def promote_version(gate: GateResult, smoke: SmokeResult) -> PromotionResult:
    """Move @champion to the gated version if gate and smoke passed and nobody moved it since.

    Every outcome is audited.

    Args:
        gate: the gate's result, holding the champion version it compared against.
        smoke: the Bento smoke test's result.

    Returns:
        PromotionResult "promoted", "refused", or "lost_race" when champion no longer points
        at the version the gate compared against (nothing changed then).
    """
    reasons = (*gate.decision.reasons, f"{'PASS' if smoke.passed else 'FAIL'} {smoke.reason}")
    name, version = gate.name, gate.version
    passed = gate.decision.promote and smoke.passed
    # published before champion moves: the champion guard reads this very tag
    outcome, compared = PASSED if passed else REFUSED, gate.champion_version
    verdict = Verdict(outcome, reasons, compared, measured(gate.candidate))
    publish_outcome(name, version, gate.project_root, verdict)
    if not passed:
        result = PromotionResult(
            "refused", name, version, gate.champion_version, gate.champion_version, reasons
        )
    else:
        move = registry.move_champion(name, version, expected=gate.champion_version)
        if move.outcome == "moved":
            result = PromotionResult(
                "promoted", name, version, version, gate.champion_version, reasons, smoke.tag
            )
        else:
            lost = (
                f"LOST THE RACE: champion moved from {gate.champion_version} to "
                f"{move.observed} after the gate; nothing changed"
            )
            result = PromotionResult(
                "lost_race",
                name,
                version,
                move.observed,
                gate.champion_version,
                (*reasons, lost),
                smoke.tag,
            )
    audit.append_audit(
        {
            "event": "promote",
            "name": name,
            "version": version,
            "outcome": result.outcome,
            "from_version": gate.champion_version,
            "champion": result.champion,
            "bento_tag": smoke.tag,
            "reasons": list(result.reasons),
            "deltas": gate.decision.deltas,
        }
    )
    return result


def rollback_champion(name: str) -> registry.AliasMove:
    """Move @champion back to the previous champion and audit the move (or the refusal).

    Args:
        name: registered model.

    Returns:
        The AliasMove: "moved", or "nothing_to_roll_back" (audited too).
    """
    move = registry.rollback_champion(name)
    audit.append_audit(
        {
            "event": "rollback",
            "name": name,
            "version": move.to_version,
            "outcome": move.outcome,
            "from_version": move.from_version,
            "champion": move.to_version if move.outcome == "moved" else move.from_version,
            "reasons": [
                f"champion {move.from_version} -> {move.to_version}"
                if move.outcome == "moved"
                else "no earlier champion to roll back to"
            ],
            "deltas": {},
        }
    )
    return move


@task
def skip_unchanged(name: str, version: str, reused: bool) -> PromotionResult | None:
    """The outcome when the candidate already is the champion (a cached rerun), else None.

    Same ONNX file, same pinned test split, already serving: gating, packaging and smoke-testing
    it again could only repeat the decision already on record.

    Args:
        name: registered model.
        version: the candidate's version.
        reused: registering found this very variant already registered (RegisteredVersion).

    Returns:
        PromotionResult "unchanged", or None when the candidate must be gated.
    """
    champion = registry.alias_version(name, registry.CHAMPION)
    if not reused or champion != version:
        return None
    return PromotionResult(
        outcome="unchanged",
        name=name,
        version=version,
        champion=champion,
        previous_champion=champion,
        reasons=(f"PASS version {version} (same ONNX file, same test split) is already champion",),
        bento_tag=registry.client().get_model_version(name, version).tags.get("bento_tag"),
    )


@task
def hold_rolled_back(name: str, version: str) -> PromotionResult | None:
    """The outcome for the automatic path when `version` is one champion was rolled back from.

    A rollback is a person's verdict on that version; an unchanged rerun would otherwise pass
    the gate again and undo it. It stays held until someone promotes it by hand (`tuneline
    promote N`, which clears the mark); new data or params give a new version anyway.

    Args:
        name: registered model.
        version: the candidate's version.

    Returns:
        PromotionResult "held" (audited; champion untouched), or None when not marked.
    """
    when = registry.rolled_back_on(name, version)
    if when is None:
        return None
    champion = registry.alias_version(name, registry.CHAMPION)
    reason = (
        f"version {version} was rolled back from on {when}; "
        f"`tuneline promote {version}` to promote it again"
    )
    audit.append_audit(
        {
            "event": "promote",
            "name": name,
            "version": version,
            "outcome": "held",
            "from_version": champion,
            "champion": champion,
            "reasons": [reason],
            "deltas": {},
        }
    )
    return PromotionResult(
        outcome="held",
        name=name,
        version=version,
        champion=champion,
        previous_champion=champion,
        reasons=(reason,),
        bento_tag=registry.version_tags(name, champion).get("bento_tag") if champion else None,
    )
