"""What data validation checks: the Great Expectations suite over the derived frame.

Every check is a real GX expectation. Where GX has no built-in for an aggregate (label type
mix, duplicate rate, class share, cross-split leakage) the aggregate is computed per row
(tasks/data/derive.py) into a derived `_`-column and asserted with a plain GX expectation, so
it still shows in Data Docs. GX is imported lazily (the import costs seconds);
tasks/data/gx.py runs the suite.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tasks.data.derive import ROW, derive
from tuneline.config import ValidationParams

REQUIRED = ("text", "label")
CONTROL_CHARS = r"[\x00-\x08\x0B-\x1F]"  # C0 controls except \t and \n
TEXT_CHECKS = tuple(["text_not_null", "text_is_str", "text_not_empty", "text_not_whitespace"])
TEXT_CHECKS += ("text_length", "text_no_nul")
LABEL_CHECKS = tuple(["label_not_null", "label_in_set", "label_one_type", "min_classes"])
LABEL_CHECKS += ("min_class_share",)
Describe = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Check:
    """One named check: a GX expectation plus how to say what it found."""

    name: str
    expectation: Any  # a great_expectations Expectation (GX is imported lazily)
    describe: Describe  # GX result dict -> finding, e.g. "3 rows have empty text"
    examples: pd.Series | None = None  # rows to show where GX reports no row ids


@dataclass(frozen=True)
class Outcome:
    """A check after the run: passed, or its finding and up to 3 example row numbers."""

    name: str
    success: bool
    finding: str = ""
    rows: tuple[int, ...] = ()


@dataclass
class Suite:
    """The checks to run on `frame`, those skipped for a missing column, and non-GX findings."""

    frame: pd.DataFrame
    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problems: list[Outcome] = field(default_factory=list)


def _gxe() -> Any:
    import great_expectations.expectations as gxe

    # GX logs every store write and config detail at INFO; only real errors should show.
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    return gxe


def fmt(values: Sequence[Any], limit: int = 5) -> str:
    """A short, readable list of values (repr, so control characters stay visible)."""
    shown = [repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..." for v in values[:limit]]
    return ", ".join(shown) + (", ..." if len(values) > limit else "")


def _distinct(values: Any) -> list[Any]:
    return list(dict.fromkeys(repr(v) for v in values).keys())


def _count(what: str) -> Describe:
    return lambda r: f"{r.get('unexpected_count', 0)} rows {what}"


def _check(name: str, kind: str, describe: Describe, examples: Any = None, **kw: Any) -> Check:
    """`kind` is the GX class name without its `Expect` prefix, to keep the tables short."""
    expectation = getattr(_gxe(), f"Expect{kind}")(**kw, meta={"check": name})
    return Check(name, expectation, describe, examples)


def _text_checks(params: ValidationParams) -> list[Check]:
    lo, hi = params.min_chars, params.max_chars

    def lengths(r: dict[str, Any]) -> str:
        seen = sorted({int(v) for v in r.get("partial_unexpected_list", [])})
        return (
            f"{r.get('unexpected_count', 0)} rows have a text length outside [{lo}, {hi}] "
            f"characters (lengths: {fmt(seen)})"
        )

    def controls(r: dict[str, Any]) -> str:
        found = {c for v in r.get("partial_unexpected_list", []) for c in str(v)}
        chars = sorted(c for c in found if re.fullmatch(CONTROL_CHARS, c))
        return (
            f"{r.get('unexpected_count', 0)} rows contain NUL or other control characters "
            f"({fmt(chars)})"
        )

    def types(r: dict[str, Any]) -> str:
        seen = _distinct(r.get("partial_unexpected_list", []))
        return (
            f"{r.get('unexpected_count', 0)} rows have non-string text (types: {', '.join(seen)})"
        )

    c = _check
    return [
        c("text_not_null", "ColumnValuesToNotBeNull", _count("have no text (null)"),
          column="text"),
        c("text_is_str", "ColumnValuesToBeInSet", types,
          column="_text_type", value_set=["str"]),
        c("text_not_empty", "ColumnValuesToNotMatchRegex", _count("have empty text"),
          column="text", regex=r"\A\Z"),
        c("text_not_whitespace", "ColumnValuesToNotMatchRegex", _count("have whitespace-only text"),
          column="text", regex=r"\A\s+\Z"),
        # on the length, not the text: a 1 MB text must not be copied into Data Docs
        c("text_length", "ColumnValuesToBeBetween", lengths,
          column="_text_length", min_value=lo, max_value=hi),
        c("text_no_nul", "ColumnValuesToNotMatchRegex", controls,
          column="text", regex=CONTROL_CHARS),
    ]  # fmt: skip


def _label_checks(
    frame: pd.DataFrame, params: ValidationParams, labels: Sequence[str]
) -> list[Check]:
    counts = frame["_label"].value_counts(dropna=True)
    types = frame["_label_type"].value_counts(dropna=True)
    rare_type = frame["_label_type"].isin(types.index[1:])
    rare_class = frame["_class_share"] < params.min_class_share

    def outside(r: dict[str, Any]) -> str:
        seen = _distinct(r.get("partial_unexpected_list", []))
        return (
            f"{r.get('unexpected_count', 0)} rows have labels outside {list(labels)}: "
            f"{', '.join(seen[:5])}"
        )

    def mixed(r: dict[str, Any]) -> str:
        parts = []
        for name in types.index:
            sample = frame.loc[frame["_label_type"] == name, "label"].head(2).tolist()
            parts.append(f"{types[name]} {name} (e.g. {fmt(sample)})")
        return f"labels mix {len(types)} Python types: " + "; ".join(parts)

    def few_classes(r: dict[str, Any]) -> str:
        return (
            f"{r.get('observed_value')} distinct labels ({fmt(list(counts.index))}), "
            f"need at least {params.min_classes}"
        )

    def rare(r: dict[str, Any]) -> str:
        total = int(counts.sum())
        small = [
            f"{name!r} has {n} rows ({n / total:.1%})"
            for name, n in counts.items()
            if n / total < params.min_class_share
        ]
        return f"{'; '.join(small)}: below the minimum class share {params.min_class_share:.1%}"

    c = _check
    checks = [
        c("label_not_null", "ColumnValuesToNotBeNull", _count("have no label"), column="_label")
    ]
    if labels:
        allowed = list(labels)
        checks += [
            c("label_in_set", "ColumnValuesToBeInSet", outside, column="_label", value_set=allowed)
        ]
    checks += [
        c("label_one_type", "ColumnUniqueValueCountToBeBetween", mixed, rare_type,
          column="_label_type", max_value=1),
        c("min_classes", "ColumnUniqueValueCountToBeBetween", few_classes,
          column="_label", min_value=params.min_classes),
        c("min_class_share", "ColumnValuesToBeBetween", rare, rare_class,
          column="_class_share", min_value=params.min_class_share),
    ]  # fmt: skip
    return checks


def _duplicate_check(frame: pd.DataFrame, params: ValidationParams) -> Check:
    def finding(r: dict[str, Any]) -> str:
        n = int(frame["_duplicate"].sum())
        return (
            f"{n / len(frame):.1%} of rows ({n} of {len(frame)}) repeat an earlier row exactly "
            f"(same text and label), above {params.max_duplicate_rate:.1%}"
        )

    # `mostly` says "at most this share may be duplicates" and, unlike a mean, passes on an
    # empty frame (min_rows reports that) and points at the duplicated rows.
    return _check(
        "duplicate_rate",
        "ColumnValuesToBeInSet",
        finding,
        column="_duplicate",
        value_set=[0],
        mostly=round(1.0 - params.max_duplicate_rate, 12),
    )


def build_suite(df: pd.DataFrame, params: ValidationParams, labels: Sequence[str] = ()) -> Suite:
    """Every check that applies to `df`; checks needing a missing column are listed as skipped."""
    columns = [str(c) for c in df.columns]
    twice = [c for c in REQUIRED if columns.count(c) > 1]
    usable = df.loc[:, [c for c in df.columns if str(c) not in twice]]
    suite = Suite(frame=derive(usable))
    frame = suite.frame
    for col in twice:  # a renamed column can collide with one already called text/label
        finding = f"column {col!r} appears {columns.count(col)} times (found columns: {columns})"
        suite.problems.append(Outcome("required_columns", False, finding))

    def missing(col: str) -> Describe:
        return lambda r: f"column {col!r} is missing (found columns: {columns})"

    suite.checks.append(
        _check(
            "min_rows",
            "TableRowCountToBeBetween",
            lambda r: f"{r.get('observed_value')} rows, need at least {params.min_rows}",
            min_value=params.min_rows,
        )
    )
    for col in REQUIRED:
        if col not in twice:
            suite.checks.append(
                _check("required_columns", "ColumnToExist", missing(col), column=col)
            )
    if "text" in frame:
        suite.checks += _text_checks(params)
    else:
        suite.skipped += TEXT_CHECKS
    if "label" in frame:
        suite.checks += _label_checks(frame, params, labels)
    else:
        suite.skipped += [c for c in LABEL_CHECKS if labels or c != "label_in_set"]
    if "_duplicate" in frame:
        suite.checks.append(_duplicate_check(frame, params))
    else:
        suite.skipped.append("duplicate_rate")
    return suite


def leakage_suite(splits: Mapping[str, pd.DataFrame]) -> Suite:
    """One frame of every split's distinct texts; a text in two splits breaks GX uniqueness."""
    parts: list[pd.DataFrame] = []
    problems: list[Outcome] = []
    for split, df in splits.items():
        if "text" not in df.columns:
            cols = [str(c) for c in df.columns]
            missing = f"split {split!r} has no 'text' column (found columns: {cols})"
            problems.append(Outcome("required_columns", False, missing))
            continue
        texts = pd.Series(df["text"].to_numpy(dtype=object), dtype=object).dropna()
        texts = texts.map(lambda t: t if isinstance(t, str) else repr(t))  # lists are unhashable
        parts.append(pd.DataFrame({"split": split, "text": texts.drop_duplicates()}))
    combined = (
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["split", "text"])
    )
    frame = combined.astype(object)
    frame.insert(0, ROW, np.arange(len(frame), dtype="int64"))
    leaked = frame["text"].duplicated(keep=False)
    pairs = frame[leaked].groupby("text", sort=False)["split"].agg(lambda s: " & ".join(sorted(s)))

    def finding(r: dict[str, Any]) -> str:
        by_pair = pairs.value_counts()
        where = ", ".join(f"{pair}: {n}" for pair, n in by_pair.items())
        return (
            f"{len(pairs)} texts appear in more than one split ({where}); "
            f"e.g. {fmt(list(pairs.index))}"
        )

    check = _check("leakage", "ColumnValuesToBeUnique", finding, leaked, column="text")
    return Suite(frame=frame, checks=[check], problems=problems)
