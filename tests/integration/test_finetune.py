"""Fine-tuning end to end on the smoke profile: torchrun, MLflow tracking, DDP equivalence.

DDP tolerance: with dropout off and the same global batch (16 = 1 x 16 = 2 x 8), the loss
logged at every logging step by 2 processes equals the 1-process curve within 1e-3 absolute
(seen: < 1e-4; the runs differ only in float summation order). The smoke profile's class-
weighted loss is a plain per-example mean, so sharding a batch does not change it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.synthetic import LABELS, filler_splits

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
DDP_LOSS_ATOL = 1e-3


def make_project(root: Path, n_train: int = 320, seed: int = 0) -> Path:
    """A project dir with data/prepared (tests.synthetic.filler_splits) and a passed
    validation report; returns the prepared dir. Split sizes are multiples of 16."""
    prepared = filler_splits(root / "data" / "prepared", n_train=n_train, seed=seed)
    (root / "data" / "validated").mkdir(parents=True)
    (root / "data" / "validated" / "report.json").write_text(json.dumps({"success": True}))
    return prepared


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke-profile fine-tune through the Prefect task's function, shared by the tests."""
    from tasks.finetune.task import finetune_classifier
    from tuneline.config import load_params

    root = tmp_path_factory.mktemp("finetune-project")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNELINE_HOME", str(root / "home"))
        prepared = make_project(root)
        result = finetune_classifier.fn(
            prepared, load_params(REPO, "smoke"), output_dir=root / "run", project_root=root
        )
        yield result, prepared, root / "home"


def test_smoke_finetune_beats_majority_baseline(smoke_run):
    result, _, _ = smoke_run
    metrics = result.metrics
    assert metrics["majority_baseline"] == pytest.approx(2 / 3, abs=0.01)
    assert metrics["accuracy"] >= metrics["majority_baseline"] + 0.15
    assert metrics["macro_f1"] >= 0.7
    for key in ("precision_ham", "recall_ham", "precision_spam", "recall_spam"):
        assert 0.0 <= metrics[key] <= 1.0


def test_model_dir_is_a_safe_plain_hf_directory(smoke_run):
    from tasks.finetune.evaluate import evaluate_model
    from tuneline.models import load_classifier

    result, prepared, _ = smoke_run
    model_dir = Path(result.model_dir)
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "labels.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    model, _ = load_classifier(model_dir)
    assert model.config.id2label == {0: "ham", 1: "spam"}
    assert json.loads((model_dir / "labels.json").read_text())["labels"] == LABELS
    again = evaluate_model(model_dir, prepared / "test.parquet", LABELS)
    assert again.metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])
    predictions = pd.read_parquet(again.predictions_path)
    assert len(predictions) == 96 and {"label", "pred", "prob_0", "prob_1"} <= set(predictions)


def test_evaluate_refuses_labels_the_model_was_not_trained_on(smoke_run):
    from tasks.finetune.evaluate import evaluate_model
    from tuneline.errors import TrainingError

    result, prepared, _ = smoke_run
    with pytest.raises(TrainingError, match="labels"):
        evaluate_model(Path(result.model_dir), prepared / "test.parquet", ["spam", "ham"])


def test_mlflow_run_holds_params_metrics_artifacts_and_lineage(smoke_run):
    from mlflow.tracking import MlflowClient

    from tuneline.settings import Settings

    result, _, home = smoke_run
    client = MlflowClient(Settings(home=home).tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.model"] == "tiny-bert"
    assert float(params["train.learning_rate"]) == pytest.approx(1e-3)
    assert params["train.world_size"] == "1"
    losses = client.get_metric_history(result.run_id, "loss")
    assert len(losses) >= 3 and len({m.step for m in losses}) == len(losses)
    assert client.get_metric_history(result.run_id, "learning_rate")
    assert len(client.get_metric_history(result.run_id, "eval_macro_f1")) >= 2
    for key in ("test_accuracy", "test_macro_f1", "test_precision_spam", "test_recall_ham"):
        assert key in run.data.metrics
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.metrics["accuracy"])
    top = {a.path for a in client.list_artifacts(result.run_id)}
    assert "confusion_matrix.png" in top
    model_files = {Path(a.path).name for a in client.list_artifacts(result.run_id, "model")}
    assert {"model.safetensors", "config.json", "tokenizer.json", "labels.json"} <= model_files
    tags = run.data.tags
    assert tags["data_validation"] == "passed"
    assert {"git_commit", "data_md5_train", "data_md5_val", "data_md5_test"} <= set(tags)


@pytest.mark.slow
def test_two_processes_follow_the_one_process_loss_curve(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from tasks.finetune.task import finetune_classifier
    from tuneline.config import load_params
    from tuneline.settings import get_settings

    monkeypatch.setenv("TUNELINE_HOME", str(tmp_path / "home"))
    prepared = make_project(tmp_path / "project")
    curves = {}
    for nproc in (1, 2):
        params = load_params(
            REPO,
            "smoke",
            {
                "train.nproc": nproc,
                "train.dropout": 0.0,
                "train.max_steps": 20,
                "train.logging_steps": 2,
                "train.num_threads": 1,
            },
        )
        result = finetune_classifier.fn(prepared, params, output_dir=tmp_path / f"n{nproc}")
        history = MlflowClient(get_settings().tracking_uri).get_metric_history(
            result.run_id, "loss"
        )
        # one point per logging step: only rank 0 logged
        assert sorted(m.step for m in history) == list(range(2, 21, 2))
        curves[nproc] = [m.value for m in sorted(history, key=lambda m: m.step)]
        done = json.loads((tmp_path / f"n{nproc}" / "train_result.json").read_text())
        assert done["world_size"] == nproc
    worst = max(abs(a - b) for a, b in zip(curves[1], curves[2], strict=True))
    assert worst <= DDP_LOSS_ATOL, f"loss curves differ by {worst:.2e}: {curves}"
    assert curves[1][0] != curves[1][-1]  # the curve moved: the comparison means something
