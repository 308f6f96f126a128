"""The settings loader: one source, profiles that may only override what exists."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tuneline.config import check_profile, load_params, set_params
from tuneline.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.unit


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    return tmp_path


def test_every_shipped_profile_is_valid() -> None:
    for path in (REPO / "configs").glob("*.yaml"):
        params = load_params(REPO, path.stem)
        assert params.base.profile == path.stem


def test_smoke_profile_overrides_training_settings() -> None:
    default, smoke = load_params(REPO, "default"), load_params(REPO, "smoke")
    assert smoke.train.model == "tiny-bert" and default.train.model == "minilm"
    assert smoke.data.max_rows > 0 and default.data.max_rows == 0
    assert smoke.data.source == default.data.source  # untouched keys come from params.yaml


def test_unknown_key_and_type_change_are_refused_by_name(project: Path) -> None:
    (project / "configs" / "bad.yaml").write_text(
        "train:\n  epochz: 3\n  batch_size: large\ndata:\n  augment: true\n"
    )
    with pytest.raises(ConfigError) as info:
        load_params(project, "bad")
    message = str(info.value)
    # every problem at once, each named
    assert "unknown key 'train.epochz'" in message
    assert "type change for 'train.batch_size': int -> str" in message
    assert "type change for 'data.augment': mapping -> bool" in message


def test_invalid_value_is_refused(project: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        load_params(project, overrides={"train.batch_size": 0})


def test_missing_profile_lists_available(project: Path) -> None:
    with pytest.raises(ConfigError, match="smoke"):
        load_params(project, "nope")


def test_check_profile_allows_int_for_float() -> None:
    assert check_profile({"a": 1.0}, {"a": 2}) == []
    assert check_profile({"a": True}, {"a": 1}) != []


def test_set_params_keeps_comments_and_is_a_noop_when_equal(project: Path) -> None:
    path = project / "params.yaml"
    before = path.read_text()
    assert set_params(project, {"data.source": "sms_spam"}) is False
    assert path.read_text() == before
    assert set_params(project, {"data.source": "movie_reviews"}) is True
    after = path.read_text()
    assert "single source for DVC stages" in after  # comment kept
    assert load_params(project).data.source == "movie_reviews"
    with pytest.raises(ConfigError, match=r"unknown key 'data\.nope'"):
        set_params(project, {"data.nope": 1})


def test_no_work_at_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    code = (
        "import tuneline.config, tuneline.settings, flows.cli, flows.training, "
        "tasks.data.prepare"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing created
    importlib.import_module("tuneline.settings")
