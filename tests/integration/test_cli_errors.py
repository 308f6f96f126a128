"""Bad command-line arguments get one named line and a non-zero exit, never a traceback
(issue 14, item 6): an unknown or malformed version, no registered model, a path for a profile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    shutil.copytree(REPO / "configs", root / "configs")
    return root


def _env(**extra: str) -> dict[str, str]:
    # in-process tests before these (mlflow.set_registry_uri) leave MLFLOW_* in os.environ
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, **extra}


def tuneline(root: Path, *args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = _env(TUNELINE_HOME=str(home or root / ".tuneline"))
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "--root", str(root)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return lines[0]


def test_a_version_that_is_no_number(project: Path) -> None:
    line = one_line(tuneline(project, "promote", "abc"))
    assert line == "promote: version must be a number (1, 2, ...), got 'abc'"


def test_promote_and_rollback_with_no_registered_model(project: Path) -> None:
    line = one_line(tuneline(project, "promote", "9999"))
    assert "no model 'tuneline-classifier' is registered yet" in line
    line = one_line(tuneline(project, "rollback"))
    assert line.startswith("rollback: no model 'tuneline-classifier' is registered yet")


def test_a_version_the_model_does_not_have(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    code = (
        "from mlflow import MlflowClient;"
        f"c = MlflowClient('sqlite:///{home}/mlflow.db');"
        "c.create_registered_model('tuneline-classifier');"
        f"c.create_model_version('tuneline-classifier', '{tmp_path.as_uri()}/model')"
    )
    home.mkdir()
    made = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    line = one_line(tuneline(project, "promote", "9999", home=home))
    assert line == "promote: 'tuneline-classifier' has no version 9999 (versions: 1)"


@pytest.mark.parametrize("command", [["run", "--data-only"], ["promote", "1"], ["rollback"]])
def test_a_profile_is_a_name_from_configs_not_a_path(project: Path, command: list[str]) -> None:
    before = (project / "params.yaml").read_text()
    proc = tuneline(project, *command, "--profile", "../params")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out, out
    assert "profile '../params' is not a profile name" in out and "available: default" in out
    assert (project / "params.yaml").read_text() == before


def test_run_with_a_data_file_that_is_not_there_or_not_a_table(
    project: Path, tmp_path: Path
) -> None:
    before = (project / "params.yaml").read_text()
    line = one_line(tuneline(project, "run", "--data", str(tmp_path / "nope.csv")))
    assert line.startswith("--data ") and "nope.csv: no such file" in line
    notes = tmp_path / "notes.txt"
    notes.write_text("text,label\n")
    line = one_line(tuneline(project, "run", "--data", str(notes)))
    assert "unsupported format '.txt'" in line
    assert (project / "params.yaml").read_text() == before
