"""Data validation with Great Expectations: refuse bad data before anything learns from it.

Each run writes a report directory: GX Data Docs (`data_docs/index.html`) and `summary.json`,
and prints a table of failed checks with example rows. Bad data never surfaces as a traceback:
the caller gets a `DataValidationError` whose failures each start with the check's name. A
failed check whose severity is a warning is printed and recorded the same way but refuses
nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.data.checks import WARNING, Suite, build_suite, leakage_suite
from tasks.data.gx import run_suite
from tasks.data.prepare import MIN_CLASS_ROWS
from tasks.data.tables import read_table
from tuneline.config import DataParams
from tuneline.errors import DataValidationError
from tuneline.io import atomic_dir, write_json

DOCS_DIR = "data_docs"
SUMMARY = "summary.json"
_EXAMPLE_CHARS = 80


@dataclass(frozen=True)
class ValidationResult:
    """What a validation run decided; the details live in `report_dir`.

    Attributes:
        success: no check of severity error failed.
        failures: one line per failed error check, each starting with the check name.
        n_rows: rows validated.
        report_dir: holds `data_docs/index.html` and `summary.json`.
        name: the dataset name used in the report.
        checks: (check name, "passed" | "failed" | "warning" | "skipped") in run order.
        warnings: one line per failed warning check, like `failures`.
    """

    success: bool
    failures: tuple[str, ...]
    n_rows: int
    report_dir: str
    name: str = ""
    checks: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def data_docs(self) -> str:
        return str(Path(self.report_dir) / DOCS_DIR / "index.html")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and reproducible (no timestamps): the lineage record of the run."""
        return {
            "name": self.name,
            "success": self.success,
            "failures": list(self.failures),
            "warnings": list(self.warnings),
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


def _print_findings(
    name: str, found: list[dict[str, Any]], report_dir: Path, *, warning: bool, last: bool
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    n = len(found)
    title = (
        f"data validation: {n} warning{'s' * (n != 1)} for {name} (the run goes on)"
        if warning
        else f"data validation failed: {name}"
    )
    table = Table(title=title, show_lines=True)
    table.add_column("check", style="bold yellow" if warning else "bold red", no_wrap=True)
    table.add_column("found")
    table.add_column("example rows")
    for item in found:
        rows = "\n".join(
            f"#{ex['row']}: " + " ".join(f"{k}={v}" for k, v in ex.items() if k != "row")
            for ex in item["examples"]
        )
        # Text, not markup: a "[/b]" inside user data must print, not be parsed
        table.add_row(item["check"], Text(item["finding"]), Text(rows or "-"))
    console = Console(stderr=True, width=140)
    console.print(table)
    if last:
        console.print(Text(f"report: {report_dir / DOCS_DIR / 'index.html'}"))


def _report(suite: Suite, *, name: str, report_dir: Path, n_rows: int) -> ValidationResult:
    """Run the suite, write Data Docs and summary.json, print failures, return the result."""
    report_dir = Path(report_dir)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "data"  # GX uses it in file names
    with atomic_dir(report_dir / DOCS_DIR) as docs:
        outcomes = run_suite(suite, name=name, docs_dir=docs)
    found = [
        {
            "check": o.name,
            "severity": o.severity,
            "finding": o.finding,
            "examples": [_example(suite.frame, r) for r in o.rows],
        }
        for o in outcomes
        if not o.success
    ]
    failed = [f for f in found if f["severity"] != WARNING]
    warned = [f for f in found if f["severity"] == WARNING]
    status: dict[str, str] = {}
    for o in outcomes:  # a check listed twice (required_columns) fails if either failed
        verdict = "passed" if o.success else ("warning" if o.severity == WARNING else "failed")
        if status.get(o.name) in (None, "passed"):
            status[o.name] = verdict
    status.update({s: "skipped" for s in suite.skipped})
    result = ValidationResult(
        success=not failed,
        failures=tuple(f"{f['check']}: {f['finding']}" for f in failed),
        n_rows=n_rows,
        report_dir=str(report_dir),
        name=name,
        checks=tuple(status.items()),
        warnings=tuple(f"{f['check']}: {f['finding']}" for f in warned),
    )
    summary = result.to_dict()
    summary["details"] = found
    summary["data_docs"] = f"{DOCS_DIR}/index.html"
    write_json(report_dir / SUMMARY, summary)
    if warned:
        _print_findings(name, warned, report_dir, warning=True, last=not failed)
    if failed:
        _print_findings(name, failed, report_dir, warning=False, last=True)
    return result


def run_validation(
    df: pd.DataFrame, data: DataParams, *, name: str, report_dir: Path
) -> ValidationResult:
    """Validate a frame with `text` and `label` columns; never raises for bad data.

    Args:
        df: the rows, as `tasks.data.tables.read_table` returns them.
        data: the `data` settings: thresholds and severities (`data.validation`), allowed
            labels (compared as `str(label)`; empty allows any) and label case.
        name: dataset name for the report (letters, digits, `_-.`).
        report_dir: where Data Docs and summary.json go.

    Returns:
        The result; `failures` lists every failed error check, `warnings` every warning.
    """
    suite = build_suite(df, data, min_class_rows=MIN_CLASS_ROWS)
    return _report(suite, name=name, report_dir=report_dir, n_rows=len(df))


def validate_frame(
    df: pd.DataFrame, data: DataParams, *, name: str, report_dir: Path
) -> ValidationResult:
    """Like `run_validation`, but a failed error check raises (warnings do not).

    Raises:
        DataValidationError: with every failure and the report directory.
    """
    result = run_validation(df, data, name=name, report_dir=report_dir)
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
    """Read a CSV / JSONL / JSON / Parquet file and validate it with `params.validation`.

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
    return validate_frame(df, params, name=name, report_dir=Path(report_dir))


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
