"""Session-wide test setup: an isolated TUNELINE_HOME, quiet Prefect, loopback-only services."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# what a project workspace needs for DVC stages to run (their code deps are paths in it)
WORKSPACE_ITEMS = (
    "dvc.yaml",
    "params.yaml",
    "configs",
    "tasks",
    "tuneline",
    "flows",
    "serving",
    ".dvcignore",
)


@pytest.fixture(scope="session", autouse=True)
def _session_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("tuneline-home")
    env = {
        "TUNELINE_HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "DO_NOT_TRACK": "1",
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session (it takes ~30 s to start on 2 cores)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):
        yield


def make_workspace(dest: Path, profile: str = "smoke") -> Path:
    """A fresh project checkout in `dest`: git + DVC repo with the smoke profile selected."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in WORKSPACE_ITEMS:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / item)
    run = lambda *a: subprocess.run(a, cwd=dest, check=True, capture_output=True)  # noqa: E731
    run("git", "init", "-q")
    run("git", "config", "user.email", "test@example.com")
    run("git", "config", "user.name", "test")
    run(sys.executable, "-m", "dvc", "init", "-q")
    from tuneline.config import set_params

    set_params(dest, {"base.profile": profile})
    run("git", "add", "-A")
    run("git", "commit", "-qm", "workspace")
    return dest


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "project")
