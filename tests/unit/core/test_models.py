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


VOCAB_SCRIPT = """
import json, sys
from tests.synthetic import synthetic_rows
from tuneline.config import load_params
from tuneline.models import build_tiny_bert
texts = synthetic_rows(300, 5)["text"].tolist() + ["tie one", "tie two", "tie three"]
_, tok = build_tiny_bert(texts, ["ham", "spam"], load_params(".", "smoke").train)
print(json.dumps(sorted(tok.get_vocab().items())))
"""


def test_tiny_vocabulary_is_the_same_in_every_process() -> None:
    """Different hash seeds (= different processes) build identical token ids."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    vocabs = [
        subprocess.run(
            [sys.executable, "-c", VOCAB_SCRIPT],
            cwd=repo,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        for seed in ("1", "2", "3")
    ]
    assert vocabs[0] and vocabs[0] == vocabs[1] == vocabs[2]


def test_tiny_vocabulary_orders_words_and_covers_unknown_ones() -> None:
    from tuneline.config import load_params
    from tuneline.models import TINY_SPECIAL, build_tiny_bert

    train = load_params(Path(__file__).resolve().parents[3], "smoke").train
    texts = ["dog cat", "cat emu", "dog ant"]  # dog 2, cat 2, emu 1, ant 1
    _, tok = build_tiny_bert(texts, ["x", "y"], train)
    vocab = tok.get_vocab()
    assert [vocab[t] for t in TINY_SPECIAL] == list(range(len(TINY_SPECIAL)))
    # by count, ties by spelling, after every character and "##" continuation
    assert vocab["##t"] < vocab["cat"] < vocab["dog"] < vocab["ant"] < vocab["emu"]
    assert tok.tokenize("god") == ["g", "##o", "##d"]  # an unseen word: character pieces
    assert tok.tokenize("Dog, CAT!") == ["dog", "[UNK]", "cat", "[UNK]"]  # unseen punctuation
