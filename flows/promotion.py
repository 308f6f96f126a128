"""Promotion flow: gate -> package -> smoke test -> compare-and-set @champion.

Flows only wire tasks. A refused gate or a failed smoke test raises PromotionRefused (every
reason listed); losing the compare-and-set race is an outcome, returned as a value.
"""

from __future__ import annotations

from prefect import flow

from tasks.release.gate import gate_version_task
from tasks.release.package import package_version_task
from tasks.release.promote import (
    PromotionResult,
    champion_unchanged_task,
    hold_rolled_back_task,
    promote_version_task,
    smoke_test_task,
)
from tasks.release.register import register_variant_task
from tuneline.config import Params, load_params
from tuneline.errors import PromotionRefused


def promote_tail(version: str, *, params: Params, project_root: str = ".") -> PromotionResult:
    """Gate, package, smoke-test and promote a registered version (call inside a flow).

    Raises:
        PromotionRefused: the gate or the Bento smoke test refused the candidate.
    """
    name = params.gate.registered_model
    gate = gate_version_task(name, version, params, project_root)
    if not gate.decision.promote:
        raise PromotionRefused(list(gate.decision.reasons))
    bento = package_version_task(name, version, params)
    smoke = smoke_test_task(bento, params, project_root)
    result = promote_version_task(gate, smoke)
    if result.outcome == "refused":
        raise PromotionRefused(list(result.reasons))
    return result


def release_variant(
    onnx_dir: str,
    *,
    params: Params,
    finetune_run_id: str | None,
    variant_run_id: str | None,
    project_root: str = ".",
) -> PromotionResult:
    """The whole tail for the training flow: register -> gate -> package -> promote.

    A candidate that already is champion returns "unchanged"; one that champion was rolled
    back from returns "held" (see tasks.release.promote.hold_rolled_back). Neither is gated again.

    Raises:
        PromotionRefused: as `promote_tail`.
    """
    registered = register_variant_task(
        onnx_dir, params, finetune_run_id, variant_run_id, project_root
    )
    unchanged = champion_unchanged_task(registered.name, registered.version, registered.reused)
    if unchanged is not None:
        return unchanged
    held = hold_rolled_back_task(registered.name, registered.version)
    if held is not None:  # rolled back from by hand: only a promotion by hand brings it back
        return held
    return promote_tail(registered.version, params=params, project_root=project_root)


@flow(name="promotion")
def promotion_flow(
    version: str, profile: str | None = None, project_root: str = "."
) -> PromotionResult:
    """Run the gate for a chosen registered version and promote it if it passes."""
    params = load_params(project_root, profile)
    return promote_tail(version, params=params, project_root=project_root)
