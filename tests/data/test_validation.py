"""The bad-data matrix: each kind of broken file is refused by the check that names it.

Every case writes a real file and goes through `validate_file` (read_table + the GX suite),
the same path the validate stage takes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tasks.data.tables import read_table
from tasks.data.validate import (
    SUMMARY,
    ValidationResult,
    check_leakage,
    run_validation,
    validate_file,
)
from tuneline.config import DataParams, load_params
from tuneline.errors import DataValidationError

pytestmark = [pytest.mark.data, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
HAM = [
    "meeting",
    "lunch",
    "tomorrow",
    "office",
    "report",
    "call",
    "family",
    "dinner",
    "weekend",
    "garden",
]
SPAM = ["winner", "prize", "claim", "free", "cash", "offer", "urgent", "click", "bonus", "lottery"]


def base_rows(n: int = 80) -> list[dict[str, Any]]:
    """A small learnable dataset: two classes with their own vocabularies, no duplicates."""
    rows = []
    for i in range(n):
        label = "spam" if i % 3 == 0 else "ham"
        words = SPAM if label == "spam" else HAM
        text = " ".join(words[(i * k) % len(words)] for k in (1, 3, 7)) + f" message {i}"
        rows.append({"text": text, "label": label})
    return rows


@pytest.fixture(scope="module")
def params() -> DataParams:
    data = load_params(ROOT, "smoke").data
    return data.model_copy(update={"labels": ("ham", "spam")})


def write(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...] = ()) -> Path:
    df = pd.DataFrame(rows, columns=list(columns) or None)
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        df.to_parquet(path, index=False)
    return path


def refused(path: Path, params: DataParams, report_dir: Path) -> list[str]:
    """The failures of a file that must be refused."""
    with pytest.raises(DataValidationError) as info:
        validate_file(path, params, report_dir=report_dir)
    assert info.value.failures, "a refusal must say why"
    return list(info.value.failures)


def checks_named(failures: list[str]) -> set[str]:
    return {f.split(":", 1)[0] for f in failures}


def summary(report_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((report_dir / SUMMARY).read_text("utf-8"))
    return loaded


def mutate(change: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    rows = base_rows()
    change(rows)
    return rows


def _set(rows: list[dict[str, Any]], idx: tuple[int, ...], key: str, value: Any) -> None:
    for i in idx:
        rows[i][key] = value


BAD_CASES = {
    "empty_text": (mutate(lambda r: _set(r, (3, 4), "text", "")), "text_not_empty"),
    "whitespace_text": (mutate(lambda r: _set(r, (5,), "text", " \t  ")), "text_not_whitespace"),
    "label_outside_set": (mutate(lambda r: _set(r, (1, 2, 4), "label", "eggs")), "label_in_set"),
    "missing_label": (mutate(lambda r: _set(r, (7,), "label", "")), "label_not_null"),
    "nul_bytes": (mutate(lambda r: _set(r, (9,), "text", "free\x00cash")), "text_no_nul"),
    "control_char": (mutate(lambda r: _set(r, (9,), "text", "bell\x07here")), "text_no_nul"),
    "one_mb_text": (mutate(lambda r: _set(r, (2,), "text", "spam " * 210_000)), "text_length"),
    "single_class": (mutate(lambda r: _set(r, tuple(range(80)), "label", "ham")), "min_classes"),
    "class_of_one": (
        [
            *mutate(lambda r: _set(r, tuple(i for i in range(80) if i % 3 == 0), "label", "ham")),
            {"text": "claim your free prize", "label": "spam"},
        ],
        "class_in_every_split",
    ),
    "duplicates": (base_rows()[:50] + base_rows()[:30], "duplicate_rate"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_csv_is_refused_by_the_named_check(
    case: str, params: DataParams, tmp_path: Path
) -> None:
    rows, check = BAD_CASES[case]
    failures = refused(write(tmp_path / f"{case}.csv", rows), params, tmp_path / "report")
    assert check in checks_named(failures), failures
    assert summary(tmp_path / "report")["checks"][check] == "failed"


def test_zero_rows_with_header(params: DataParams, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("text,label\n", encoding="utf-8")
    failures = refused(path, params, tmp_path / "report")
    # row-level checks pass vacuously on empty data: the row count is what must refuse it
    assert "min_rows" in checks_named(failures)
    assert any("0 rows" in f for f in failures if f.startswith("min_rows"))


def test_label_set_failure_names_the_bad_value(params: DataParams, tmp_path: Path) -> None:
    rows, _ = BAD_CASES["label_outside_set"]
    rows = [dict(r) for r in rows]
    rows[1]["text"] = "[/b] rich markup in data [bold] must print, not parse"
    failures = refused(write(tmp_path / "d.csv", rows), params, tmp_path / "report")
    message = next(f for f in failures if f.startswith("label_in_set"))
    assert "3 rows" in message and "'eggs'" in message and "['ham', 'spam']" in message


def test_mixed_label_types_are_refused(params: DataParams, tmp_path: Path) -> None:
    # "1" in a CSV becomes the int 1, so 1 next to "spam" is two Python types
    rows = mutate(lambda r: _set(r, tuple(range(0, 80, 2)), "label", "1"))
    any_label = params.model_copy(update={"labels": ()})
    failures = refused(write(tmp_path / "mixed.csv", rows), any_label, tmp_path / "report")
    assert "label_one_type" in checks_named(failures)
    message = next(f for f in failures if f.startswith("label_one_type"))
    assert "int" in message and "str" in message


def test_missing_text_column_is_named_and_other_checks_still_run(
    params: DataParams, tmp_path: Path
) -> None:
    rows = [{"body": r["text"], "label": r["label"]} for r in base_rows()]
    rows[0]["label"] = "eggs"
    failures = refused(write(tmp_path / "body.csv", rows), params, tmp_path / "report")
    message = next(f for f in failures if f.startswith("required_columns"))
    assert "'text'" in message and "body" in message  # what is missing and what was found
    assert "label_in_set" in checks_named(failures)  # the label checks still ran
    checks = summary(tmp_path / "report")["checks"]
    assert checks["text_not_empty"] == "skipped" and checks["label_one_type"] == "passed"


def test_renamed_label_column(params: DataParams, tmp_path: Path) -> None:
    rows = [{"text": r["text"], "category": r["label"]} for r in base_rows()]
    path = write(tmp_path / "renamed.csv", rows)
    failures = refused(path, params, tmp_path / "report")
    message = next(f for f in failures if f.startswith("required_columns"))
    assert "'label'" in message and "category" in message
    # pointing label_col at the new name makes the same file valid
    mapped = params.model_copy(update={"label_col": "category"})
    assert validate_file(path, mapped, report_dir=tmp_path / "report2").success


def test_column_renamed_onto_an_existing_one(params: DataParams, tmp_path: Path) -> None:
    rows = [{"text": "x", "body": r["text"], "label": r["label"]} for r in base_rows()]
    from_body = params.model_copy(update={"text_col": "body"})
    failures = refused(write(tmp_path / "two.csv", rows), from_body, tmp_path / "report")
    message = next(f for f in failures if f.startswith("required_columns"))
    assert "'text' appears 2 times" in message


def test_non_utf8_names_file_and_offset(params: DataParams, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    good = b"text,label\nhello there,ham\n"
    path.write_bytes(good + "caf\xe9 prize,spam\n".encode("latin-1"))
    failures = refused(path, params, tmp_path / "report")
    assert failures[0].startswith("valid_utf8")
    assert str(path) in failures[0] and f"byte offset {len(good) + 3}" in failures[0]


def test_non_string_text_in_jsonl_is_refused(params: DataParams, tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", base_rows())
    lines = path.read_text("utf-8").splitlines()
    lines[1] = json.dumps({"text": ["a", "list"], "label": {"not": "hashable"}})
    lines[2] = json.dumps({"text": 12345, "label": "ham"})
    path.write_text("\n".join(lines) + "\n", "utf-8")
    failures = refused(path, params, tmp_path / "report")
    assert {"text_is_str", "label_in_set", "label_one_type"} <= checks_named(failures)


def test_bom_and_crlf_are_accepted_and_normalised(params: DataParams, tmp_path: Path) -> None:
    body = "text,label\r\n" + "".join(f'"{r["text"]}",{r["label"]}\r\n' for r in base_rows())
    body = body.replace("message 5", "message\r\nfive")  # a CRLF inside a quoted text
    path = tmp_path / "windows.csv"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    result = validate_file(path, params, report_dir=tmp_path / "report")
    assert result.success and result.n_rows == 80
    df = read_table(path)
    assert list(df.columns) == ["text", "label"]  # no BOM glued to the first name
    assert not df["text"].str.contains("\r").any()
    assert any(t.endswith("message\nfive") for t in df["text"])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_clean_file_passes(suffix: str, params: DataParams, tmp_path: Path) -> None:
    path = write(tmp_path / f"clean{suffix}", base_rows())
    result = validate_file(path, params, report_dir=tmp_path / "report")
    assert isinstance(result, ValidationResult)
    assert result.success and not result.failures and result.n_rows == 80
    record = result.to_dict()
    json.dumps(record)  # JSON-ready
    assert "label_in_set" in record["checks_run"] and "min_rows" in record["checks_run"]


def test_report_has_data_docs_and_summary(params: DataParams, tmp_path: Path) -> None:
    report = tmp_path / "report"
    rows, _ = BAD_CASES["empty_text"]
    with pytest.raises(DataValidationError) as info:
        validate_file(write(tmp_path / "d.csv", rows), params, report_dir=report)
    index = report / "data_docs" / "index.html"
    assert info.value.report_path == str(index) and index.is_file()
    pages = list((report / "data_docs" / "validations").rglob("*.html"))
    assert len(pages) == 1
    page = pages[0].read_text("utf-8")
    assert "Failed" in page and r"\A\Z" in page  # the rendered text_not_empty expectation
    record = summary(report)
    assert record["success"] is False and record["n_rows"] == 80
    detail = next(d for d in record["details"] if d["check"] == "text_not_empty")
    assert [e["row"] for e in detail["examples"]] == [3, 4]


def test_run_validation_never_raises_and_a_clean_file_passes(
    params: DataParams, tmp_path: Path
) -> None:
    garbage = pd.DataFrame({"text": [None, 3.5, ""], "label": [[1], None, float("nan")]})
    result = run_validation(garbage, params, name="garbage", report_dir=tmp_path / "g")
    assert not result.success and "min_rows" in checks_named(list(result.failures))
    path = write(tmp_path / "clean.csv", base_rows())
    assert validate_file(path, params, report_dir=tmp_path / "file").success


def test_leakage_between_splits(tmp_path: Path) -> None:
    df = pd.DataFrame(base_rows())
    clean = {"train": df.iloc[:56], "val": df.iloc[56:68], "test": df.iloc[68:]}
    assert check_leakage(clean, report_dir=tmp_path / "ok").success
    leaky = {
        "train": pd.concat([df.iloc[:56], df.iloc[56:58], df.iloc[70:71]]),
        "val": df.iloc[56:68],
        "test": pd.concat([df.iloc[68:], df.iloc[56:57]]),
    }
    with pytest.raises(DataValidationError) as info:
        check_leakage(leaky, report_dir=tmp_path / "leak")
    message = next(f for f in info.value.failures if f.startswith("leakage"))
    # row 56 is in all three, row 57 in train & val, row 70 in train & test
    assert "3 texts" in message
    assert "train & val: 1" in message and "test & train & val: 1" in message
    assert (tmp_path / "leak" / "data_docs" / "index.html").is_file()
