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
SCALAR_TYPES = ("str", "int", "float", "bool")  # a label is one value, never a list or mapping


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


def _scalar(value: Any) -> int | None:
    name = _type_name(value)
    return None if name is None else int(name in SCALAR_TYPES)


def derive(df: pd.DataFrame, raw_labels: pd.Series | None = None) -> pd.DataFrame:
    """The frame GX validates: text/label plus the per-row aggregates the checks assert.

    Args:
        df: the rows, labels already normalised (tasks/data/labels.py).
        raw_labels: the labels as read, to flag the rows whose label normalising changed.

    Returns:
        The frame, one row per input row, `ROW` numbering them.
    """
    out = pd.DataFrame({ROW: np.arange(len(df), dtype="int64")})
    if "text" in df.columns:
        out["text"] = pd.Series(df["text"].to_numpy(dtype=object), dtype=object)
        out["_text_type"] = out["text"].map(_type_name).astype(object)
        out["_text_length"] = out["text"].map(lambda t: len(t) if isinstance(t, str) else None)
    if "label" in df.columns:
        out["label"] = pd.Series(df["label"].to_numpy(dtype=object), dtype=object)
        out["_label"] = out["label"].map(_label_text).astype(object)
        out["_label_type"] = out["label"].map(_type_name).astype(object)
        out["_label_scalar"] = out["label"].map(_scalar).astype(object)
        shares = out["_label"].value_counts(normalize=True, dropna=True)
        out["_class_share"] = out["_label"].map(shares).astype("float64")
        raw = out["label"] if raw_labels is None else raw_labels.reset_index(drop=True)
        pairs = zip(raw, out["label"], strict=True)
        changed = [a is not b and repr(a) != repr(b) for a, b in pairs]
        out["_label_merged"] = np.array(changed, dtype="int64")
        # distinct texts per class: what is left to split once duplicates are dropped
        labels = out["_label"]
        if "text" in out.columns:
            labels = labels[~out["text"].map(repr).duplicated()]
        per_class = labels.value_counts(dropna=True)
        out["_class_rows"] = out["_label"].map(per_class).astype("float64")
    if "text" in out.columns and "label" in out.columns:
        # repr keeps 1 and "1" apart and copes with unhashable values (lists in JSONL)
        keys = out["text"].map(repr) + "\x00" + out["label"].map(repr)
        out["_duplicate"] = keys.duplicated().astype("int64")
    return out
