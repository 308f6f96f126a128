"""Cleaning: normalise text and drop what cannot be learned from, counting every drop."""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

import pandas as pd

from tuneline.config import CleanParams

_TAG = re.compile(r"<[^>]{0,200}>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class CleanCounts:
    """Rows in, rows out, and why each dropped row went (these become metrics)."""

    rows_in: int
    dropped_empty: int
    dropped_duplicate: int
    rows_out: int


def clean_text(text: str, params: CleanParams) -> str:
    """NFC, HTML tags/entities stripped, control/NUL characters removed, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text)
    if params.strip_html:
        text = html.unescape(_TAG.sub(" ", text))
        text = unicodedata.normalize("NFC", text)  # entities can decode to combining forms
    # Cc = control characters (NUL included); whitespace controls become a space first.
    # U+FEFF (a stray BOM) and U+200B are invisible and only split tokens.
    chars = []
    for ch in text:
        if ch in "\t\n\r\v\f":
            chars.append(" ")
        elif unicodedata.category(ch) != "Cc" and ch not in "\ufeff\u200b":
            chars.append(ch)
    text = "".join(chars)
    text = _SPACE.sub(" ", text).strip()
    return text.lower() if params.lowercase else text


def clean_frame(df: pd.DataFrame, params: CleanParams) -> tuple[pd.DataFrame, CleanCounts]:
    """Clean `text`, then drop empty texts and exact-duplicate texts (first occurrence kept).

    Args:
        df: frame with `text` and `label` columns.
        params: the `data.clean` settings.

    Returns:
        The cleaned frame (fresh index) and the counts of every drop.
    """
    out = df[["text", "label"]].copy()
    out["text"] = out["text"].astype(str).map(lambda t: clean_text(t, params))
    empty = out["text"].str.len() == 0
    out = out[~empty]
    dup = out["text"].duplicated(keep="first")
    out = out[~dup].reset_index(drop=True)
    counts = CleanCounts(
        rows_in=len(df),
        dropped_empty=int(empty.sum()),
        dropped_duplicate=int(dup.sum()),
        rows_out=len(out),
    )
    return out, counts
