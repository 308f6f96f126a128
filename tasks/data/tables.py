"""Reading a user's table: CSV, JSON Lines, a JSON array of records, or Parquet.

Only the data step reads raw tables, so this lives here (moved from tuneline/io.py). Every
reader yields the same frame: the configured columns renamed to `text` and `label`, text kept
exactly as decoded, integer-looking labels as ints (so a mixed column can be refused).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from tuneline.errors import DataValidationError, IngestError

# .json is one JSON array of records; JSON Lines (one record per line) is .jsonl
SUPPORTED_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
_INT_RE = re.compile(r"^[+-]?\d+$")


def file_format(path: Path | str) -> str:
    """The format of a data file, from its suffix.

    Raises:
        IngestError: the suffix is none of SUPPORTED_FORMATS.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in SUPPORTED_FORMATS:
        raise IngestError(
            f"{path}: unsupported format '{suffix}' (use one of {sorted(SUPPORTED_FORMATS)})"
        )
    return SUPPORTED_FORMATS[suffix]


def decode_utf8(path: Path | str) -> str:
    """Decode a whole file as UTF-8 (BOM stripped, CRLF -> LF).

    Raises:
        DataValidationError: naming the file and byte offset of the first invalid byte.
    """
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        bad = raw[offset:][:4]
        raise DataValidationError(
            [f"valid_utf8: {path} is not valid UTF-8 at byte offset {offset} (bytes {bad!r})"]
        ) from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _int_label(value: Any) -> Any:
    # CSV gives every label as text; "1" and "spam" in one column must stay distinguishable
    # so validation can refuse mixed label types.
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _json_records(path: Path, text: str) -> pd.DataFrame:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(
            f"{path}: cannot be read as a JSON array of records: {exc}; a file with one "
            "JSON record per line is JSON Lines: name it .jsonl"
        ) from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        found = type(records).__name__
        if isinstance(records, list):
            found = "an array of " + ", ".join(sorted({type(r).__name__ for r in records}))
        raise IngestError(
            f"{path}: a .json file must hold one JSON array of records (objects), found {found}"
        )
    # from_records keeps each value as parsed: a list stays a list for validation to name
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def read_table(
    path: Path | str,
    text_col: str = "text",
    label_col: str = "label",
    header: bool = True,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Read a CSV / JSONL / JSON / Parquet file into a frame with `text` and `label` columns.

    Columns are renamed only when present: a missing column is left for validation to report
    by name. Text is kept as strings exactly as decoded (no NA guessing: "NA" is a text).

    Args:
        path: the file; `.json` is one JSON array of records, `.jsonl` one record per line.
        text_col: its text column.
        label_col: its label column.
        header: a CSV has a header row.
        names: column names of a CSV without one.

    Returns:
        The rows, `text` and `label` named so.

    Raises:
        IngestError: unreadable file or unsupported format.
        DataValidationError: the file is not valid UTF-8 (file and byte offset named).
    """
    path = Path(path)
    if not path.exists():
        raise IngestError(f"data file not found: {path}")
    fmt = file_format(path)
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            text = decode_utf8(path)
            if fmt == "csv":
                df = pd.read_csv(
                    io.StringIO(text),
                    dtype=str,
                    keep_default_na=False,
                    header=0 if header else None,
                    names=names,
                )
            elif fmt == "json":
                df = _json_records(path, text)
            else:
                df = pd.read_json(io.StringIO(text), lines=True, dtype=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise IngestError(f"{path}: cannot be read as {fmt}: {exc}") from exc
    df.columns = [str(c) for c in df.columns]
    rename = {}
    if text_col in df.columns:
        rename[text_col] = "text"
    if label_col in df.columns:
        rename[label_col] = "label"
    df = df.rename(columns=rename)
    if "label" in df.columns:
        df["label"] = df["label"].map(_int_label).astype(object)
    return df
