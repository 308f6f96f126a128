"""`tuneline tune --trials 3 --profile smoke` on a copy of the project: the study finishes with
3 trials as MLflow child runs of its run, persisted in SQLite, and the best values are written
into params.yaml (the real one is never touched). Slow: three fine-tunes (~5 min on 2 cores)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, make_workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

KNOBS = ("learning_rate", "epochs", "batch_size", "warmup_ratio", "weight_decay")


def test_tune_three_trials_as_child_runs_and_best_values_written(tmp_path: Path) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    root = make_workspace(tmp_path / "project", "default")
    # the copy's smoke profile starts from a learning rate too low to learn in 60 steps, so a
    # trial beats the values it starts from and their replacement is written
    smoke = root / "configs" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("learning_rate: 1.0e-3", "learning_rate: 1.0e-5"))
    home = tmp_path / "home"
    before = (REPO / "params.yaml").read_text(encoding="utf-8")
    env = {**os.environ, "TUNELINE_HOME": str(home)}
    env.pop("TUNELINE_MLFLOW_TRACKING_URI", None)
    env.pop("TUNELINE_OPTUNA_STORAGE", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "tune",
            "--trials",
            "3",
            "--profile",
            "smoke",
            "--root",
            str(root),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1700,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    # the baseline trial's epochs (3.0) lie outside the smoke range [1, 2]: no Optuna warning
    assert "out of range" not in out
    assert (REPO / "params.yaml").read_text(encoding="utf-8") == before

    summaries = optuna.get_all_study_summaries(f"sqlite:///{home / 'optuna.db'}")
    assert len(summaries) == 1 and summaries[0].n_trials == 3
    study = optuna.load_study(
        study_name=summaries[0].study_name, storage=f"sqlite:///{home / 'optuna.db'}"
    )
    assert study.trials[0].params["learning_rate"] == pytest.approx(1.0e-5)  # where it started
    assert study.best_trial.number != 0 and study.best_value > study.trials[0].value

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tuneline")
    parents = client.search_runs([exp.experiment_id], "tags.step = 'tune'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'"
    )
    assert len(children) == 3
    assert all("eval_macro_f1" in c.data.metrics for c in children)
    assert (
        parents[0].data.metrics["best_val_macro_f1"]
        >= max(
            c.data.metrics["eval_macro_f1"]
            for c in children
            if c.data.tags.get("tune.state") == "complete"
        )
        - 1e-9
    )

    written = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))["train"]
    best = study.best_trial.params
    for knob in KNOBS:
        assert written[knob] == pytest.approx(best[knob], rel=1e-3), knob
    assert "best val macro-F1" in out and "written to params.yaml" in out
    assert "note: profile 'smoke' overrides train.batch_size, train.epochs" in out
    assert (home / "tune-last.json").is_file()  # the summary screen's "tuning" line
