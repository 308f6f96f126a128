"""Scheduled / data-triggered retraining: train and gate only when the source changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow

from flows.training import training_flow
from tasks.data.changes import check_source_task, gate_outcome, record_trained_task


@dataclass(frozen=True)
class RetrainOutcome:
    """What a retraining run did: 'nothing to do', or trained with the gate's verdict."""

    action: str
    source: str
    sha256: str
    gate: str = ""


@flow(name="tuneline-retraining", log_prints=True)
def retraining_flow(project_root: str = ".") -> RetrainOutcome:
    """Check the source's content hash; if new, run the training flow (which gates)."""
    root = Path(project_root)
    check = check_source_task(root)
    if not check.changed:
        print(f"nothing to do: {check.source} unchanged (sha256 {check.sha256[:12]})")
        return RetrainOutcome("nothing to do", check.source, check.sha256)
    state = training_flow(project_root=project_root, force_ingest=True, return_state=True)
    gate = gate_outcome(state)  # re-raises anything that is not a gate refusal
    record_trained_task(root, check)
    return RetrainOutcome("trained", check.source, check.sha256, gate)


def build_deployment(project_root: str, params: Any) -> Any:
    """The retraining deployment: this flow on the cron schedule from params.retrain."""
    from prefect.schedules import Cron

    return retraining_flow.to_deployment(
        name=params.retrain.deployment,
        schedule=Cron(params.retrain.cron, timezone=params.retrain.timezone),
        parameters={"project_root": str(Path(project_root).resolve())},
        description="Retrain and gate when the data source changed.",
        tags=["tuneline", "retraining"],
    )
