"""The CLI: one entry point, --help everywhere."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli import app

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("args", [[], ["run"], ["stage"], ["promote"], ["rollback"], ["serve"]])
def test_help_everywhere(args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_unknown_stage_is_named() -> None:
    result = CliRunner().invoke(app, ["stage", "nope"])
    assert result.exit_code == 2
    assert "unknown stage 'nope'" in result.output


def test_bad_option_value_is_refused_without_touching_params(tmp_path, monkeypatch) -> None:
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    shutil.copy(repo / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(repo / "configs", tmp_path / "configs")
    before = (tmp_path / "params.yaml").read_text()
    result = CliRunner().invoke(app, ["run", "--profile", "nope", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "profile 'nope' not found" in result.output
    assert (tmp_path / "params.yaml").read_text() == before


def test_prefect_home_is_created_on_a_fresh_clone(tmp_path, monkeypatch) -> None:
    from flows.cli import prefect_env

    monkeypatch.setenv("TUNELINE_HOME", str(tmp_path / "fresh" / ".tuneline"))
    monkeypatch.delenv("PREFECT_HOME")
    for key in ("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "PREFECT_API_URL"):
        monkeypatch.setenv(key, "x")
        monkeypatch.delenv(key)
    prefect_env()
    assert (tmp_path / "fresh" / ".tuneline" / "prefect").is_dir()
