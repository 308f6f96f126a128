"""Model loading refuses what could execute code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneline.errors import UnsafeArtifactError
from tuneline.models import check_safe_model_dir, resolve_model_source

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["config.json", "tokenizer_config.json"])
def test_remote_code_in_any_config_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text(json.dumps({"auto_map": {"AutoModel": "evil.Evil"}}))
    with pytest.raises(UnsafeArtifactError, match=rf"{name}: asks for remote code"):
        check_safe_model_dir(tmp_path)


def test_pickle_weights_are_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeArtifactError, match="pickle-format weights"):
        check_safe_model_dir(tmp_path)


def test_default_model_resolves_offline() -> None:
    path = Path(resolve_model_source("minilm"))
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
    check_safe_model_dir(path)
