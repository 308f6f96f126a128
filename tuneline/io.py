"""File helpers every task shares: atomic writes, hashes, and reading user tables."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from tuneline.errors import DataValidationError, IngestError

SUPPORTED_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
_INT_RE = re.compile(r"^[+-]?\d+$")


def md5_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """MD5 of a file's bytes, the same digest DVC records."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it replaces `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield a temporary directory that replaces `target` as a whole only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: Path | str, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", "utf-8")


def write_parquet(path: Path | str, df: pd.DataFrame) -> None:
    """Write a frame deterministically (no index, fixed compression) and atomically."""
    with atomic_path(path) as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False, compression="zstd")


def file_format(path: Path | str) -> str:
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
        bad = raw[exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0) :][:4]
        raise DataValidationError(
            [f"valid_utf8: {path} is not valid UTF-8 at byte offset {offset} (bytes {bad!r})"]
        ) from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _normalise_label(value: Any) -> Any:
    # CSV gives every label as text; "1" and "spam" in one column must stay distinguishable
    # so validation can refuse mixed label types.
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def read_table(
    path: Path | str,
    text_col: str = "text",
    label_col: str = "label",
    header: bool = True,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Read a CSV / JSONL / Parquet file into a frame with `text` and `label` columns.

    Columns are renamed only when present: a missing column is left for validation to report
    by name. Text is kept as strings exactly as decoded (no NA guessing: "NA" is a text).

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
        df["label"] = df["label"].map(_normalise_label).astype(object)
    return df
