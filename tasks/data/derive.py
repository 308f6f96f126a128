"""The frame data validation asserts on: raw text/label plus per-row aggregates.

GX has no built-in expectation for aggregates such as the label type mix, the duplicate rate
or a class's share, so each is computed here per row into a `_`-column that a plain GX
expectation in tasks/data/checks.py can assert on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

ROW = "_row"  # input row number, so GX results point at the offending rows


def _type_name(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, int | np.integer):
        return "int"  # numpy integers from Parquet are ints too
    if isinstance(value, float | np.floating):
        return "float"
    return type(value).__name__


def _label_text(value: Any) -> str | None:
    if _type_name(value) is None:
        return None
    text = str(value)
    return text if text.strip() else None  # an empty CSV cell is a missing label


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """The frame GX validates: raw text/label plus the per-row aggregates the checks assert."""
    out = pd.DataFrame({ROW: np.arange(len(df), dtype="int64")})
    if "text" in df.columns:
        out["text"] = pd.Series(df["text"].to_numpy(dtype=object), dtype=object)
        out["_text_type"] = out["text"].map(_type_name).astype(object)
        out["_text_length"] = out["text"].map(lambda t: len(t) if isinstance(t, str) else None)
    if "label" in df.columns:
        out["label"] = pd.Series(df["label"].to_numpy(dtype=object), dtype=object)
        out["_label"] = out["label"].map(_label_text).astype(object)
        out["_label_type"] = out["label"].map(_type_name).astype(object)
        shares = out["_label"].value_counts(normalize=True, dropna=True)
        out["_class_share"] = out["_label"].map(shares).astype("float64")
    if "text" in out.columns and "label" in out.columns:
        # repr keeps 1 and "1" apart and copes with unhashable values (lists in JSONL)
        keys = out["text"].map(repr) + "\x00" + out["label"].map(repr)
        out["_duplicate"] = keys.duplicated().astype("int64")
    return out
