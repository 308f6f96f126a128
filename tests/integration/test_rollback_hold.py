"""A rollback sticks: after rolling back 4 -> 2 -> 1, a plain rerun whose cached candidate is the
rolled-back version holds it (champion unchanged) until it is promoted by hand.

Real MLflow sqlite store and Prefect; the versions are one tiny ONNX variant registered from
three "runs", so nothing is trained twice and no Bento is built.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from flows.training import release_version
from tasks.release.decision import Decision, Scorecard
from tasks.release.gate import GateResult
from tasks.release.promote import (
    PromotionResult,
    hold_rolled_back,
    promote_version,
    rollback_champion,
    skip_unchanged,
)
from tasks.release.register import register_variant
from tasks.release.smoke import SmokeResult
from tests.helpers_serving import build_variant, make_project
from tuneline import audit, registry
from tuneline.config import load_params

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
MODEL = "tuneline-classifier"  # params.yaml gate.registered_model


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("hold")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNELINE_HOME", str(base / "home"))
        mp.setenv("BENTOML_HOME", str(base / "home" / "bentoml"))
        mp.delenv("TUNELINE_MLFLOW_TRACKING_URI", raising=False)
        root = base / "project"
        make_project(root)  # DVC-committed splits: the lineage every version records
        params = load_params(REPO, profile="smoke")  # the repo's settings, this module's store
        assert params.gate.registered_model == MODEL
        # trained enough to pass the gate: only the hold keeps it from being re-promoted
        variant = build_variant(root, base / "variant", params, shuffle=False, steps=30)
        yield {"root": root, "params": params, "variant": variant}


@flow(name="rerun-release")
def rerun(project: dict[str, Any], run: str) -> PromotionResult:
    """The release block of flows/training.py with everything cached: the same variant."""
    params, root = project["params"], project["root"]
    registered = register_variant(
        str(project["variant"]),
        params=params,
        finetune_run_id=f"ft-{run}",
        variant_run_id=f"var-{run}",
        project_root=root,
    )
    return (
        skip_unchanged(registered.name, registered.version, registered.reused)
        or hold_rolled_back(registered.name, registered.version)
        or release_version(registered.name, registered.version, params, root)
    )


def by_hand(version: str, champion: str) -> PromotionResult:
    """The last step of `tuneline promote VERSION` once its gate and smoke test passed."""
    card = Scorecard((True,), 1.0, 1.0, {"ham": 1.0}, 1.0, 1.0, True, True, True, version)
    gate = GateResult(MODEL, version, champion, Decision(True, ("PASS by hand",)), card, None)
    return promote_version.fn(gate, SmokeResult(True, "answered", "bento:tag"))


def test_a_rolled_back_version_is_held_until_promoted_by_hand(
    project: dict[str, Any], prefect_harness: None
) -> None:
    versions = {}
    for run in ("1", "2", "4"):
        versions[run] = register_variant.fn(
            project["variant"],
            params=project["params"],
            finetune_run_id=f"ft-{run}",
            variant_run_id=f"var-{run}",
            project_root=project["root"],
        ).version
    v1, v2, v4 = versions["1"], versions["2"], versions["4"]
    for new, old in ((v1, None), (v2, v1), (v4, v2)):
        assert registry.move_champion(MODEL, new, expected=old).outcome == "moved"
    assert rollback_champion(MODEL).to_version == v2
    assert rollback_champion(MODEL).to_version == v1

    held = rerun(project, "4")  # nothing changed: the cached candidate is v4 again
    assert held.outcome == "held" and held.version == v4, held
    assert held.champion == v1 and registry.alias_version(MODEL, "champion") == v1
    assert held.reasons[0].startswith(f"version {v4} was rolled back from on ")
    assert held.reasons[0].endswith(f"`tuneline promote {v4}` to promote it again")
    assert audit.read_audit()[-1]["outcome"] == "held"
    assert rerun(project, "2").outcome == "held"  # every version rolled back from

    promoted = by_hand(v4, champion=v1)
    assert promoted.outcome == "promoted" and registry.alias_version(MODEL, "champion") == v4
    assert registry.rolled_back_on(MODEL, v4) is None  # the hand promotion cleared the mark
    assert rerun(project, "4").outcome == "unchanged"
    assert registry.rolled_back_on(MODEL, v2) is not None  # still held: never promoted by hand
