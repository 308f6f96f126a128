"""The CLI keeps a user's data and a project's state safe: a source inside a DVC stage output is
refused before anything is touched, every command's state follows --root, and a second run of
the same project is refused while the first holds the lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.synthetic import synthetic_rows
from tuneline.config import set_params
from tuneline.runlock import project_lock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]


def user_csv(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_rows(120, seed=5).drop(columns="augmented").to_csv(path, index=False)
    return path.read_bytes()


def tuneline(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`tuneline ARGS` from `cwd`, as from a user's shell: no TUNELINE_HOME, no BENTOML_HOME."""
    env = {k: v for k, v in os.environ.items() if k not in ("TUNELINE_HOME", "BENTOML_HOME")}
    env.pop("_TUNELINE_HOME_FROM_ROOT", None)
    env.pop("PREFECT_HOME", None)  # prefect_env derives it from the state directory
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_run_refuses_a_source_inside_data_raw_and_keeps_the_file(workspace: Path) -> None:
    mine = workspace / "data" / "raw" / "mine.csv"
    data = user_csv(mine)
    params = (workspace / "params.yaml").read_bytes()
    args = ["run", "--root", str(workspace), "--data", str(mine), "--data-only"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "lies inside data/raw, an output of DVC stage 'ingest'" in result.output
    assert "e.g. in data/user/" in result.output and "data/prepared/train.parquet" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert mine.read_bytes() == data  # byte-identical, never deleted
    assert (workspace / "params.yaml").read_bytes() == params
    assert not (workspace / "dvc.lock").exists()  # DVC never ran


def test_dvc_repro_alone_refuses_a_source_inside_a_stage_output(workspace: Path) -> None:
    # DVC deletes data/raw before the stage body runs (the CLI refuses before that); the body
    # still refuses by name instead of "not an existing file"
    user_csv(workspace / "data" / "raw" / "mine.csv")
    set_params(workspace, {"data.source": "data/raw/mine.csv"})
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "-s", "ingest"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0
    log = proc.stdout + proc.stderr
    assert "data.source 'data/raw/mine.csv' lies inside data/raw, an output of DVC stage" in log
    assert "e.g. in data/user/" in log and "nor an existing file" not in log
    assert "Traceback" not in log


def test_stage_and_serve_keep_their_state_under_root_from_another_directory(
    workspace: Path, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = workspace / ".tuneline"
    set_params(workspace, {"data.source": str(workspace / "data" / "user" / "missing.csv")})
    staged = tuneline(["stage", "ingest", "--root", str(workspace)], elsewhere)
    assert staged.returncode == 2, staged.stderr
    assert "nor an existing file" in staged.stderr
    assert (state / "errors" / "ingest.json").is_file()  # the flow reads the error back there

    # the project's registry has a champion: serve from elsewhere must find it
    uri = f"sqlite:///{state / 'mlflow.db'}"
    mlc = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = "tuneline-classifier"
    mlc.create_registered_model(name)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    version = mlc.create_model_version(name, source=str(model_dir)).version
    mlc.set_registered_model_alias(name, "champion", version)
    served = tuneline(["serve", "--root", str(workspace)], elsewhere)
    assert served.returncode == 1, served.stdout + served.stderr
    assert f"{name} v{version} has no Bento" in served.stdout  # found the champion
    assert "no champion yet" not in served.stdout
    assert not (elsewhere / ".tuneline").exists() and not (elsewhere / "mlruns").exists()


def test_a_second_run_of_the_project_is_refused_while_the_lock_is_held(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNELINE_HOME", str(workspace / ".tuneline"))  # what --root derives
    params = (workspace / "params.yaml").read_bytes()
    args = ["run", "--root", str(workspace), "--data", "movie_reviews", "--data-only"]
    with project_lock("tuneline run") as lock:
        assert lock == workspace / ".tuneline" / "run.lock"
        proc = tuneline(args, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"another tuneline run holds the lock (pid {os.getpid()}, started " in proc.stderr
    assert "wait for it or stop it" in proc.stderr and "Traceback" not in proc.stderr
    assert (workspace / "params.yaml").read_bytes() == params
