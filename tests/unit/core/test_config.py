"""The settings loader: one source, profiles that may only override what exists."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tests.params import delete_key
from tuneline.config import Params, load_params, set_params
from tuneline.errors import ConfigError
from tuneline.yaml_layers import check_profile

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.unit


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    return tmp_path


def fields(model: type[BaseModel], where: str = "") -> list[tuple[str, Any]]:
    """Every field of a settings model and its sections, dotted, with its FieldInfo."""
    found: list[tuple[str, Any]] = []
    for name, info in model.model_fields.items():
        found.append((where + name, info))
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            found += fields(info.annotation, f"{where}{name}.")
    return found


def test_no_setting_has_a_default_in_code() -> None:
    defaulted = [name for name, info in fields(Params) if not info.is_required()]
    assert len(fields(Params)) > 100 and defaulted == []


@pytest.mark.parametrize("profile", ["default", "smoke"])
@pytest.mark.parametrize(
    "key",
    [
        "train.epochs",  # the smoke profile overrides it: params.yaml must still hold it
        "data.validation.min_rows",
        "compress.distill_max_steps",
        "serve.max_header_bytes",
        "base.profile",
        "data.augment",  # a nested section: named once, not key by key
        "retrain",  # a whole section
    ],
)
def test_a_key_missing_from_params_yaml_fails_at_load_naming_it(
    project: Path, key: str, profile: str
) -> None:
    delete_key(project, key)
    with pytest.raises(ConfigError) as info:
        load_params(project, profile)
    assert info.value.problems == [f"params.yaml: missing key '{key}'"]


def test_every_missing_key_is_named_at_once(project: Path) -> None:
    for key in ("gate.alpha", "train.lora_r", "data.clean.lowercase"):
        delete_key(project, key)
    with pytest.raises(ConfigError) as info:
        load_params(project)
    assert sorted(info.value.problems) == [
        "params.yaml: missing key 'data.clean.lowercase'",
        "params.yaml: missing key 'gate.alpha'",
        "params.yaml: missing key 'train.lora_r'",
    ]
    assert "missing key 'gate.alpha'" in str(info.value)


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
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 1 and "movie_reviews" in changed[0][1]  # nulls stay `null`, and so on
    assert load_params(project).data.source == "movie_reviews"
    with pytest.raises(ConfigError, match=r"unknown key 'data\.nope'"):
        set_params(project, {"data.nope": 1})


def test_no_work_at_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    code = (
        "import tuneline.config, tuneline.settings, flows.cli, flows.training, tasks.data.prepare"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing created
    importlib.import_module("tuneline.settings")


def test_every_out_of_bounds_value_is_named_at_once(project: Path) -> None:
    # the values a new user tried (issue 14): each would have failed later, or never
    bad = {
        "data.val_fraction": 1.2,
        "data.validation.max_duplicate_rate": 1.0,
        "serve.port": 99999,
        "serve.max_texts": -1,
        "gate.min_accuracy": 1.5,
        "compress.calibration_rows": 0,
        "base.seed": -1,
        "retrain.cron": "0 3 * *",
        "retrain.timezone": "Mars/Olympus",
    }
    with pytest.raises(ConfigError) as info:
        load_params(project, overrides=bad)
    named = {p.split("'")[1] for p in info.value.problems}
    assert named == set(bad), info.value.problems
    port = next(p for p in info.value.problems if "serve.port" in p)
    assert "65535" in port


def test_val_and_test_fractions_must_leave_a_train_split(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_params(project, overrides={"data.val_fraction": 0.6, "data.test_fraction": 0.5})
    (problem,) = info.value.problems
    assert problem.startswith("'data'") and "leaves no rows to train on" in problem
    assert load_params(project, overrides={"data.val_fraction": 0.4, "data.test_fraction": 0.5})


def test_warning_thresholds_sit_under_the_hard_bounds(project: Path) -> None:
    overrides = {
        "data.validation.warn_duplicate_rate": 0.3,
        "data.validation.long_text_chars": 10**6,
    }
    with pytest.raises(ConfigError) as info:
        load_params(project, overrides=overrides)
    message = str(info.value)
    assert "warn_duplicate_rate 0.3 > max_duplicate_rate 0.2" in message
    assert "long_text_chars 1000000 > max_chars 100000" in message


def test_a_severity_is_error_or_warning_and_only_for_listed_checks(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_params(project, overrides={"data.validation.severity.min_class_share": "ignore"})
    assert "data.validation.severity.min_class_share" in str(info.value)
    # a check without which training is meaningless has no severity to set
    with pytest.raises(ConfigError, match=r"unknown key 'data\.validation\.severity\.min_rows'"):
        load_params(project, overrides={"data.validation.severity.min_rows": "warning"})


@pytest.mark.parametrize("name", ["../params", "configs/smoke", "/etc/passwd", ".hidden", ""])
def test_a_profile_is_a_name_from_configs(project: Path, name: str) -> None:
    if name == "":
        assert load_params(project, name).base.profile == "default"  # empty: params.yaml's own
        return
    with pytest.raises(ConfigError) as info:
        load_params(project, name)
    assert info.value.problems == [
        f"profile '{name}' is not a profile name: a profile is the name of a file in configs/ "
        "(available: default, gpu, smoke)"
    ]
