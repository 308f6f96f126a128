"""The pandas side of validation: the derived columns the GX expectations assert on."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tasks.data.checks import fmt
from tasks.data.derive import ROW, derive
from tasks.data.validate import ValidationResult

pytestmark = pytest.mark.unit


def test_derived_columns() -> None:
    df = pd.DataFrame(
        {
            "text": ["a", "a", "a", "bb", None, 7],
            "label": ["x", 1, "x", np.int64(1), "", float("nan")],
        }
    )
    out = derive(df)
    assert list(out[ROW]) == list(range(6))
    assert out["_text_type"].tolist()[:4] == ["str"] * 4 and out["_text_type"].iloc[5] == "int"
    assert pd.isna(out["_text_type"].iloc[4])  # GX counts NaN/None as null either way
    assert out["_text_length"].tolist()[:4] == [1, 1, 1, 2]
    assert out["_text_length"].iloc[4:].isna().all()  # no length for null or non-text
    # 1 and "x" are different labels; only the third row repeats an earlier (text, label)
    assert out["_duplicate"].tolist() == [0, 0, 1, 0, 0, 0]
    assert out["_label_type"].tolist()[:4] == ["str", "int", "str", "int"]
    assert out["_label"].tolist()[:4] == ["x", "1", "x", "1"]
    assert out["_label"].iloc[4:].isna().all()  # "" and NaN are missing labels
    assert out["_class_share"].tolist()[:4] == [0.5, 0.5, 0.5, 0.5]


def test_derive_without_columns_keeps_row_numbers() -> None:
    out = derive(pd.DataFrame({"body": ["a", "b"]}))
    assert list(out.columns) == [ROW]
    assert len(out) == 2


def test_unhashable_values_do_not_break_derivation() -> None:
    out = derive(pd.DataFrame({"text": [["a"], ["a"]], "label": [{"k": 1}, {"k": 1}]}))
    assert out["_duplicate"].tolist() == [0, 1]
    assert out["_text_type"].tolist() == ["list", "list"]


def test_fmt_shows_control_characters_and_truncates() -> None:
    assert fmt(["a\x00b"]) == "'a\\x00b'"
    shown = fmt(["x" * 500, "y", "z", "w", "v", "u"])
    assert len(shown) < 120 and shown.endswith(", ...")


def test_result_to_dict_is_json_ready() -> None:
    result = ValidationResult(
        success=False,
        failures=("min_rows: 0 rows, need at least 20",),
        n_rows=0,
        report_dir="r",
        name="d",
        checks=(("min_rows", "failed"), ("text_not_empty", "skipped")),
    )
    record = json.loads(json.dumps(result.to_dict()))
    assert record["success"] is False and record["n_rows"] == 0
    assert record["failures"] == ["min_rows: 0 rows, need at least 20"]
    assert record["checks_run"] == ["min_rows"]
    assert result.data_docs.endswith("data_docs/index.html")


def test_validation_warnings_reach_every_runs_lineage_tags(tmp_path) -> None:
    from tuneline.lineage import VALIDATION_REPORT, lineage_tags

    report = tmp_path / VALIDATION_REPORT
    report.parent.mkdir(parents=True)
    warnings = ["min_class_share: 'x' has 6 rows (1.5%)", "label_case: 2 rows ... -> 'spam'"]
    report.write_text(json.dumps({"success": True, "warnings": warnings}))
    tags = lineage_tags(tmp_path)
    assert tags["data_validation"] == "passed"
    assert tags["data_validation_warnings"] == "label_case, min_class_share"
    report.write_text(json.dumps({"success": True, "warnings": []}))
    assert lineage_tags(tmp_path)["data_validation_warnings"] == "none"
