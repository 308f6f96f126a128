"""Data validation with Great Expectations: refuse bad data before anything learns from it.

Each run writes a report directory: GX Data Docs (`data_docs/index.html`) and `summary.json`,
and prints a table of failed checks with example rows. Bad data never surfaces as a traceback:
the caller gets a `DataValidationError` whose failures each start with the check's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.data.checks import Suite, build_suite, leakage_suite
from tasks.data.gx import run_suite
from tuneline.config import DataParams, ValidationParams
from tuneline.errors import DataValidationError
from tuneline.io import atomic_dir, read_table, write_json

DOCS_DIR = "data_docs"
SUMMARY = "summary.json"
_EXAMPLE_CHARS = 80


@dataclass(frozen=True)
class ValidationResult:
    """What a validation run decided; the details live in `report_dir`.

    Attributes:
        success: every check passed.
        failures: one line per failed check, each starting with the check name.
        n_rows: rows validated.
        report_dir: holds `data_docs/index.html` and `summary.json`.
        name: the dataset name used in the report.
        checks: (check name, "passed" | "failed" | "skipped") in run order.
    """

    success: bool
    failures: tuple[str, ...]
    n_rows: int
    report_dir: str
    name: str = ""
    checks: tuple[tuple[str, str], ...] = ()

    @property
    def data_docs(self) -> str:
        return str(Path(self.report_dir) / DOCS_DIR / "index.html")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and reproducible (no timestamps): the lineage record of the run."""
        return {
            "name": self.name,
            "success": self.success,
            "failures": list(self.failures),
            "n_rows": self.n_rows,
            "report_dir": self.report_dir,
            "checks": dict(self.checks),
            "checks_run": [c for c, status in self.checks if status != "skipped"],
        }


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _EXAMPLE_CHARS else text[: _EXAMPLE_CHARS - 3] + "..."


def _example(frame: pd.DataFrame, row: int) -> dict[str, Any]:
    record = frame.iloc[row]  # ROW is the positional index of the derived frame
    shown = {c: _short(record[c]) for c in ("split", "text", "label") if c in frame.columns}
    return {"row": row, **shown}


def _print_failures(name: str, failed: list[dict[str, Any]], report_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"data validation failed: {name}", show_lines=True)
    table.add_column("check", style="bold red", no_wrap=True)
    table.add_column("found")
    table.add_column("example rows")
    for item in failed:
        rows = "\n".join(
            f"#{ex['row']}: " + " ".join(f"{k}={v}" for k, v in ex.items() if k != "row")
            for ex in item["examples"]
        )
        # Text, not markup: a "[/b]" inside user data must print, not be parsed
        table.add_row(item["check"], Text(item["finding"]), Text(rows or "-"))
    console = Console(stderr=True, width=140)
    console.print(table)
    console.print(Text(f"report: {report_dir / DOCS_DIR / 'index.html'}"))


def _report(suite: Suite, *, name: str, report_dir: Path, n_rows: int) -> ValidationResult:
    """Run the suite, write Data Docs and summary.json, print failures, return the result."""
    report_dir = Path(report_dir)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "data"  # GX uses it in file names
    with atomic_dir(report_dir / DOCS_DIR) as docs:
        outcomes = run_suite(suite, name=name, docs_dir=docs)
    failed = [
        {
            "check": o.name,
            "finding": o.finding,
            "examples": [_example(suite.frame, r) for r in o.rows],
        }
        for o in outcomes
        if not o.success
    ]
    status: dict[str, str] = {}
    for o in outcomes:  # a check listed twice (required_columns) fails if either failed
        status[o.name] = "failed" if not o.success else status.get(o.name, "passed")
    status.update({s: "skipped" for s in suite.skipped})
    result = ValidationResult(
        success=not failed,
        failures=tuple(f"{f['check']}: {f['finding']}" for f in failed),
        n_rows=n_rows,
        report_dir=str(report_dir),
        name=name,
        checks=tuple(status.items()),
    )
    summary = result.to_dict()
    summary["details"] = failed
    summary["data_docs"] = f"{DOCS_DIR}/index.html"
    write_json(report_dir / SUMMARY, summary)
    if failed:
        _print_failures(name, failed, report_dir)
    return result


def run_validation(
    df: pd.DataFrame,
    params: ValidationParams,
    labels: Sequence[str] = (),
    *,
    name: str,
    report_dir: Path,
) -> ValidationResult:
    """Validate a frame with `text` and `label` columns; never raises for bad data.

    Args:
        df: the rows, as `tuneline.io.read_table` returns them.
        params: thresholds (`data.validation`).
        labels: allowed label values, compared as `str(label)`; empty allows any.
        name: dataset name for the report (letters, digits, `_-.`).
        report_dir: where Data Docs and summary.json go.

    Returns:
        The result; `failures` lists every failed check.
    """
    suite = build_suite(df, params, tuple(str(x) for x in labels))
    return _report(suite, name=name, report_dir=report_dir, n_rows=len(df))


def validate_frame(
    df: pd.DataFrame,
    params: ValidationParams,
    labels: Sequence[str] = (),
    *,
    name: str,
    report_dir: Path,
) -> ValidationResult:
    """Like `run_validation`, but a failed check is an error.

    Raises:
        DataValidationError: with every failure and the report directory.
    """
    result = run_validation(df, params, labels, name=name, report_dir=report_dir)
    if not result.success:
        raise DataValidationError(list(result.failures), result.data_docs)
    return result


def validate_file(
    path: Path | str,
    params: DataParams,
    *,
    report_dir: Path,
    header: bool = True,
    names: list[str] | None = None,
) -> ValidationResult:
    """Read a CSV / JSONL / Parquet file and validate it with `params.validation`.

    Args:
        path: the data file; its columns `params.text_col` / `params.label_col` are used.
        params: the `data` settings (column names, allowed labels, thresholds).
        report_dir: where Data Docs and summary.json go.
        header: the CSV has a header row.
        names: column names for a CSV without a header.

    Returns:
        The passing result.

    Raises:
        DataValidationError: a check failed, or the file is not valid UTF-8 (file and byte
            offset named).
        IngestError: the file is missing, of an unsupported format, or unparsable.
    """
    df = read_table(path, params.text_col, params.label_col, header=header, names=names)
    name = Path(path).name.replace(".", "_")
    return validate_frame(
        df, params.validation, params.labels, name=name, report_dir=Path(report_dir)
    )


def check_leakage(splits: Mapping[str, pd.DataFrame], *, report_dir: Path) -> ValidationResult:
    """Refuse splits that share an exact text (test rows seen in training inflate metrics).

    Args:
        splits: split name -> frame with a `text` column.
        report_dir: where Data Docs and summary.json go.

    Returns:
        The passing result.

    Raises:
        DataValidationError: naming how many texts leak between which splits.
    """
    suite = leakage_suite(splits)
    n_rows = sum(len(df) for df in splits.values())
    result = _report(suite, name="leakage", report_dir=Path(report_dir), n_rows=n_rows)
    if not result.success:
        raise DataValidationError(list(result.failures), result.data_docs)
    return result
