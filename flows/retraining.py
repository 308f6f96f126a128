"""Scheduled / data-triggered retraining: train and gate only when the source changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from prefect import flow

from flows.training import training_flow
from tasks.data.changes import check_source, gate_outcome, record_trained
from tuneline.config import Params

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment


@dataclass(frozen=True)
class RetrainOutcome:
    """What a retraining run did: 'nothing to do', or trained with the gate's verdict."""

    action: str
    source: str
    sha256: str
    gate: str = ""


@flow(name="tuneline-retraining", log_prints=True)
def retraining_flow(project_root: str = ".") -> RetrainOutcome:
    """Check the source's content hash; if new, run the training flow (which gates).

    Args:
        project_root: the project.

    Returns:
        RetrainOutcome: "nothing to do", or "trained" with the gate's verdict (a refusal is
        an outcome here, not an error).
    """
    root = Path(project_root)
    check = check_source(root)
    if not check.changed:
        print(f"nothing to do: {check.source} unchanged (sha256 {check.sha256[:12]})")
        return RetrainOutcome("nothing to do", check.source, check.sha256)
    state = training_flow(project_root=project_root, force_ingest=True, return_state=True)
    gate = gate_outcome(state)  # re-raises anything that is not a gate refusal
    record_trained(root, check)
    return RetrainOutcome("trained", check.source, check.sha256, gate)


def build_deployment(project_root: str, params: Params) -> RunnerDeployment:
    """The retraining deployment: this flow on the cron schedule from params.retrain.

    Args:
        project_root: the project the deployment retrains.
        params: settings (`retrain.deployment`, `cron`, `timezone`).

    Returns:
        The deployment, for `prefect.serve` or `.apply()`.
    """
    from prefect.schedules import Cron

    # async-dispatched: called from sync code it returns the deployment itself
    deployment = retraining_flow.to_deployment(
        name=params.retrain.deployment,
        schedule=Cron(params.retrain.cron, timezone=params.retrain.timezone),
        parameters={"project_root": str(Path(project_root).resolve())},
        description="Retrain and gate when the data source changed.",
        tags=["tuneline", "retraining"],
    )
    return cast("RunnerDeployment", deployment)
