"""The whole pipeline on the smoke profile through the real Prefect flow, MLflow, DVC, BentoML."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import make_workspace
from tuneline.config import load_params
from tuneline.settings import get_settings

pytestmark = [pytest.mark.integration]


def test_training_flow_promotes_a_champion(tmp_path: Path, prefect_harness: None) -> None:
    from flows.training import training_flow

    ws = make_workspace(tmp_path / "e2e")
    summary = training_flow(project_root=str(ws))
    text = summary.render()
    assert "promoted" in summary.extra["gate"], text
    client = MlflowClient(get_settings().tracking_uri)
    name = load_params(ws).gate.registered_model
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.tags.get("data_md5_test") == summary.data_md5["test"]
    assert champion.tags.get("git_commit", "unknown") != "unknown"
    # the fine-tuned model beat the majority-class floor recorded by the run
    run = client.get_run(champion.tags["finetune_run_id"])
    assert run.data.metrics["test_accuracy"] > run.data.metrics["test_majority_baseline"]
