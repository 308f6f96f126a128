"""A new user's own data (issue 14): rare classes, messy labels, .json files, warnings.

Every case writes a real file and goes through the stage path: `validate_file` (read_table +
the GX suite), then `prepare_splits` where the data passes. The smoke profile's settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tasks.data.prepare import MIN_CLASS_ROWS, prepare_splits
from tasks.data.tables import read_table
from tasks.data.validate import SUMMARY, validate_file
from tests.params import params as load
from tuneline.config import DataParams
from tuneline.errors import DataValidationError, IngestError

pytestmark = [pytest.mark.data, pytest.mark.timeout(300)]

TOPICS = {
    "sport": ["match", "goal", "team", "league", "coach", "score"],
    "music": ["album", "guitar", "song", "band", "concert", "lyrics"],
    "food": ["recipe", "oven", "spice", "dinner", "bread", "sauce"],
    "travel": ["flight", "hotel", "beach", "passport", "museum", "train"],
    "money": ["bank", "loan", "stock", "budget", "salary", "tax"],
    "health": ["doctor", "fever", "clinic", "sleep", "vitamin", "nurse"],
}


def rows(counts: dict[str, int], label: Any = None) -> list[dict[str, Any]]:
    """Distinct, learnable texts: each class has its own vocabulary."""
    out = []
    for cls, n in counts.items():
        words = TOPICS[cls]
        for i in range(n):
            text = f"{words[i % 6]} {words[(i * 5 + 1) % 6]} {words[(i * 7 + 2) % 6]} note {i}"
            out.append({"text": text, "label": cls if label is None else label(cls, i)})
    return out


def write_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    pd.DataFrame(records).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def data() -> DataParams:
    return load("smoke").data


def named(messages: tuple[str, ...] | list[str]) -> set[str]:
    return {m.split(":", 1)[0] for m in messages}


def prepare(path: Path, data: DataParams, out: Path) -> dict[str, pd.DataFrame]:
    raw = read_table(path, data.text_col, data.label_col)
    recipe = {"label_names": {}}
    prepare_splits(raw, recipe, data, 42, {}, out, out / "leakage")
    return {s: pd.read_parquet(out / f"{s}.parquet") for s in ("train", "val", "test")}


def test_a_rare_class_of_one_and_a_half_percent_warns_and_is_prepared(
    data: DataParams, tmp_path: Path
) -> None:
    # 400 rows (the smoke max_rows), 6 classes, the smallest 6 rows = 1.5 %
    counts = {"sport": 120, "music": 100, "food": 80, "travel": 60, "money": 34, "health": 6}
    path = write_csv(tmp_path / "six.csv", rows(counts))
    result = validate_file(path, data, report_dir=tmp_path / "report")
    assert result.success and not result.failures
    assert named(result.warnings) == {"min_class_share"}
    assert "'health' has 6 rows (1.5%)" in result.warnings[0]
    record = json.loads((tmp_path / "report" / SUMMARY).read_text("utf-8"))
    assert record["checks"]["min_class_share"] == "warning" and record["success"] is True
    assert record["warnings"] == list(result.warnings)
    page = next((tmp_path / "report" / "data_docs" / "validations").rglob("*.html"))
    assert "_class_share" in page.read_text("utf-8")  # the warning is in Data Docs too
    splits = prepare(path, data, tmp_path / "prepared")
    labels = json.loads((tmp_path / "prepared" / "labels.json").read_text())["labels"]
    health = labels.index("health")
    for name, split in splits.items():
        assert set(split["label"]) == set(range(6)), name  # every class in every split
    assert (splits["train"]["label"] == health).sum() >= 1


def test_a_class_of_two_rows_is_refused_saying_why(data: DataParams, tmp_path: Path) -> None:
    counts = {"sport": 60, "music": 50, "food": 2}
    path = write_csv(tmp_path / "two.csv", rows(counts))
    with pytest.raises(DataValidationError) as info:
        validate_file(path, data, report_dir=tmp_path / "report")
    message = next(f for f in info.value.failures if f.startswith("class_in_every_split"))
    assert "'food': 2" in message and "test, val and train" in message and "needs 3" in message
    assert MIN_CLASS_ROWS == 3


def test_fewer_rows_after_cleaning_are_refused_in_prepare(data: DataParams, tmp_path: Path) -> None:
    # three distinct raw texts that cleaning makes one (tags stripped, spaces collapsed)
    extra = [{"text": t, "label": "food"} for t in ("<b>bread</b>", "bread", " bread ")]
    path = write_csv(tmp_path / "html.csv", rows({"sport": 60, "music": 50}) + extra)
    assert validate_file(path, data, report_dir=tmp_path / "report").success
    with pytest.raises(DataValidationError, match=r"class_in_every_split: .*'food': 1"):
        prepare(path, data, tmp_path / "prepared")
    assert not (tmp_path / "prepared" / "train.parquet").exists()


def test_labels_are_stripped_and_case_merged_and_the_merge_reported(
    data: DataParams, tmp_path: Path
) -> None:
    spellings = {"sport": ["sport", "Sport ", "SPORT"], "music": ["music", " music"]}

    def label(cls: str, i: int) -> str:
        return spellings[cls][0] if i % 10 else spellings[cls][(i // 10) % len(spellings[cls])]

    path = write_csv(tmp_path / "messy.csv", rows({"sport": 60, "music": 50}, label))
    result = validate_file(path, data, report_dir=tmp_path / "report")
    assert result.success and named(result.warnings) == {"label_case"}
    merge = result.warnings[0]
    assert "'SPORT' (2 rows), 'Sport ' (2 rows) -> 'sport'" in merge and "-> 'music'" in merge
    splits = prepare(path, data, tmp_path / "prepared")
    assert json.loads((tmp_path / "prepared" / "labels.json").read_text()) == {
        "labels": ["music", "sport"]
    }
    assert sum(int((~s["augmented"]).sum()) for s in splits.values()) == 110  # none dropped
    # preserve keeps case apart (whitespace is still stripped): 'SPORT' has 2 rows, too few
    kept = data.model_copy(update={"label_case": "preserve"})
    with pytest.raises(DataValidationError) as info:
        validate_file(path, kept, report_dir=tmp_path / "kept")
    assert "'SPORT': 2" in next(f for f in info.value.failures if "every_split" in f)


def test_configured_labels_give_the_spelling(data: DataParams, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "upper.csv", rows({"sport": 60, "music": 50}, lambda c, i: c.upper())
    )
    allowed = data.model_copy(update={"labels": ("music", "sport")})
    result = validate_file(path, allowed, report_dir=tmp_path / "report")
    assert result.success and "'SPORT' (60 rows) -> 'sport'" in result.warnings[0]


def test_non_scalar_labels_are_refused_by_name(data: DataParams, tmp_path: Path) -> None:
    records = rows({"sport": 60, "music": 50})
    records[3]["label"] = ["sport", "music"]
    records[70]["label"] = {"name": "music"}
    path = tmp_path / "nested.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    with pytest.raises(DataValidationError) as info:
        validate_file(path, data, report_dir=tmp_path / "report")
    message = next(f for f in info.value.failures if f.startswith("label_scalar"))
    assert "2 rows" in message and "dict, list" in message


def test_a_json_array_of_records_is_read_as_rows(data: DataParams, tmp_path: Path) -> None:
    records = rows({"sport": 60, "music": 50})
    path = tmp_path / "array.json"
    path.write_text(json.dumps(records), "utf-8")
    df = read_table(path)
    assert list(df.columns) == ["text", "label"] and len(df) == 110
    assert validate_file(path, data, report_dir=tmp_path / "report").success
    lines = tmp_path / "lines.json"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    with pytest.raises(IngestError, match=r"JSON array of records.*name it \.jsonl"):
        read_table(lines)
    scalar = tmp_path / "numbers.json"
    scalar.write_text("[1, 2, 3]", "utf-8")
    with pytest.raises(IngestError, match="found an array of int"):
        read_table(scalar)


def test_warning_thresholds_and_severities_are_settings(data: DataParams, tmp_path: Path) -> None:
    records = rows({"sport": 60, "music": 50})
    records[5]["text"] = "long " * 1200  # 6000 characters: over long_text_chars, under max_chars
    path = write_csv(tmp_path / "d.csv", records + records[:15])  # 12 % repeat: 10 % < it < 20 %
    result = validate_file(path, data, report_dir=tmp_path / "report")
    assert result.success and named(result.warnings) == {"long_texts", "duplicate_share"}
    strict = data.model_copy(
        update={
            "validation": data.validation.model_copy(
                update={
                    "severity": data.validation.severity.model_copy(update={"long_texts": "error"})
                }
            )
        }
    )
    with pytest.raises(DataValidationError) as info:
        validate_file(path, strict, report_dir=tmp_path / "strict")
    assert named(info.value.failures) == {"long_texts"}
