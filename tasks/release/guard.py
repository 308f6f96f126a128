"""The champion guard: a @champion moved outside the gate (the alias pencil in the MLflow UI,
a script) onto a version without a passing gate decision is audited as a manual override and
moved back to the last champion the gate put there, unless `gate.allow_manual_champion`.

Called by the webhook receiver on `model_version_alias.created` and by `tuneline watch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from tuneline import audit, registry
from tuneline.config import GateParams
from tuneline.decisions import OVERRIDE_TAG, has_passing_decision


@dataclass(frozen=True)
class GuardResult:
    """What the guard did: `gated` (nothing to do), `allowed`, `reverted`, or `moved_on`
    (champion no longer points at the version by the time the lock was held)."""

    outcome: Literal["gated", "allowed", "reverted", "moved_on", "no_champion"]
    name: str
    version: str | None
    champion: str | None  # champion after the guard


def guard_champion(name: str, policy: GateParams) -> GuardResult:
    """Check the current @champion of `name` and undo it when the gate never passed it.

    The alias goes back to the newest champion in the history the gate keeps (which the
    hand-set version is not on), or is removed when there is none; both under the registry
    lock that every champion move takes. Every override is audited.

    Args:
        name: registered model.
        policy: `params.gate` (allow_manual_champion).

    Returns:
        GuardResult.
    """
    version = registry.alias_version(name, registry.CHAMPION)
    if version is None:
        return GuardResult("no_champion", name, None, None)
    tags = registry.version_tags(name, version)
    if has_passing_decision(tags):
        return GuardResult("gated", name, version, version)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    if policy.allow_manual_champion:
        if tags.get(OVERRIDE_TAG, "").startswith("allowed"):
            return GuardResult("allowed", name, version, version)  # audited once
        registry.set_version_tag(name, version, OVERRIDE_TAG, f"allowed {when}")
        _audit(name, version, "allowed", version, "gate.allow_manual_champion is true")
        return GuardResult("allowed", name, version, version)
    mlc = registry.client()
    with registry.registry_lock(name):
        if registry.alias_version(name, registry.CHAMPION) != version:
            current = registry.alias_version(name, registry.CHAMPION)
            return GuardResult("moved_on", name, version, current)
        history = [v for v in registry.champion_history(name) if v != version]
        target = history[-1] if history else None
        registry.set_version_tag(name, version, OVERRIDE_TAG, f"reverted {when}")
        if target is None:
            registry.with_retries(
                lambda: mlc.delete_registered_model_alias(name, registry.CHAMPION)
            )
        else:
            registry.with_retries(
                lambda: mlc.set_registered_model_alias(name, registry.CHAMPION, target)
            )
    why = f"@champion was set to v{version} outside the gate (no passing gate decision); " + (
        f"moved back to v{target}" if target else "removed (no earlier champion)"
    )
    _audit(name, version, "reverted", target, why)
    return GuardResult("reverted", name, version, target)


def ungated(name: str, version: str) -> str | None:
    """Why `tuneline serve` should not serve `version` as champion (None: a gate passed it).

    Args:
        name: registered model; version: the champion version.
    """
    if has_passing_decision(registry.version_tags(name, version)):
        return None
    return (
        f"{name} v{version} is @champion without a passing gate decision (set by hand?); "
        f"`tuneline promote {version}` gates it, --force serves it anyway"
    )


def _audit(name: str, version: str, outcome: str, champion: str | None, why: str) -> None:
    audit.append_audit(
        {
            "event": "manual_override",
            "name": name,
            "version": version,
            "outcome": outcome,
            "champion": champion,
            "reasons": [why],
            "deltas": {},
        }
    )
