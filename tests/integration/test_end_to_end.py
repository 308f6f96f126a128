"""The whole pipeline on the smoke profile through the real Prefect flow, MLflow, DVC and a
real Bento over HTTP: promotion, caching, params changes and data-triggered retraining.

The tests share one project (module scope) and run in order, as a user would; the cold run is
a module fixture, so a test that builds on it also passes alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import make_workspace
from tuneline.config import load_params, set_params
from tuneline.errors import PromotionRefused
from tuneline.settings import get_settings

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("e2e") / "project")


@pytest.fixture(scope="module")
def cold_run(project: Path, prefect_harness: None) -> Any:
    """The first `training_flow` on the fresh project (what it returns: the run summary).

    Every reduced-precision candidate is forced to fail parity (no INT8/BF16 graph is within
    1e-9 of its source): the run must drop them and still promote an FP32 one.
    """
    from flows.training import training_flow

    set_params(project, {"compress.quant_parity_max_abs_logit": 1e-9})
    return training_flow(project_root=str(project))


def finetune_runs() -> list[Any]:
    client = MlflowClient(get_settings().tracking_uri)
    exp = client.get_experiment_by_name("tuneline")
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], "tags.step = 'finetune'")


def champion(project: Path) -> Any:
    client = MlflowClient(get_settings().tracking_uri)
    return client.get_model_version_by_alias(load_params(project).gate.registered_model, "champion")


def test_cold_run_promotes_a_champion(project: Path, cold_run: Any) -> None:
    summary = cold_run
    assert summary.extra["gate"].startswith("promoted"), summary.render()
    assert "parent_int8_dynamic_ort: parity:" in summary.extra["other candidates"]  # dropped
    assert "_fp32_" in summary.extra["chosen variant"]  # ...and an FP32 candidate promoted
    version = champion(project)
    assert version.tags["data_md5_test"] == summary.data_md5["test"]
    assert version.tags["git_commit"] != "unknown"
    run = MlflowClient(get_settings().tracking_uri).get_run(version.tags["finetune_run_id"])
    assert run.data.metrics["test_accuracy"] > run.data.metrics["test_majority_baseline"]


def test_second_run_is_served_from_cache(
    project: Path, cold_run: Any, prefect_harness: None
) -> None:
    from flows.training import training_flow

    before_runs, before_champion = len(finetune_runs()), champion(project).version
    summary = training_flow(project_root=str(project))
    assert len(finetune_runs()) == before_runs  # the training task did not run
    assert not any(summary.stages_ran.values())  # nor did any data stage
    assert summary.extra["gate"].startswith("unchanged"), summary.extra["gate"]
    assert "FAIL" not in summary.extra["gate"]  # refuses nothing
    assert champion(project).version == before_champion


def test_params_change_reruns_from_training_on(project: Path, prefect_harness: None) -> None:
    from flows.training import training_flow

    before = len(finetune_runs())
    set_params(project, {"train.weight_decay": 0.05})  # a key the smoke profile leaves alone
    state = training_flow(project_root=str(project), return_state=True)
    assert len(finetune_runs()) == before + 1, (state, state.message)
    if state.is_completed():  # promoted, or refused by the gate: both are honest outcomes
        assert not any(state.result().stages_ran.values())  # the data stages are not rerun
    else:
        with pytest.raises(PromotionRefused):
            state.result()


def test_retraining_does_nothing_until_the_data_changes(
    project: Path, prefect_harness: None
) -> None:
    from flows.retraining import retraining_flow

    # first check records the source the current model was trained on (training is cached)
    first = retraining_flow(project_root=str(project))
    assert first.action == "trained"
    runs = len(finetune_runs())
    idle = retraining_flow(project_root=str(project))
    assert idle.action == "nothing to do"
    assert len(finetune_runs()) == runs

    # new data arrives: a user file with the prepared rows plus more
    prepared = project / "data" / "prepared"
    labels = ["ham", "spam"]
    frames = [pd.read_parquet(prepared / f"{s}.parquet") for s in ("train", "val", "test")]
    rows = pd.concat(frames)
    rows = rows[~rows["augmented"]].assign(label=lambda d: d["label"].map(labels.__getitem__))
    incoming = project.parent / "incoming.csv"
    rows[["text", "label"]].to_csv(incoming, index=False)
    set_params(project, {"data.source": str(incoming)})
    trained = retraining_flow(project_root=str(project))
    assert trained.action == "trained" and trained.gate
    assert len(finetune_runs()) == runs + 1
    assert retraining_flow(project_root=str(project)).action == "nothing to do"


def test_retraining_deployment_has_its_schedule(project: Path, prefect_harness: None) -> None:
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.retraining import build_deployment

    params = load_params(project)
    deployment_id = build_deployment(str(project), params).apply()

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_deployment(deployment_id)

    deployment = asyncio.run(read())
    assert deployment.name == params.retrain.deployment
    crons = [s.schedule.cron for s in deployment.schedules]
    assert crons == [params.retrain.cron]
