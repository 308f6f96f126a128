"""What data validation checks: the Great Expectations suite over the derived frame.

Every check is a real GX expectation. Where GX has no built-in for an aggregate (label type
mix, duplicate rate, class share, cross-split leakage) the aggregate is computed per row
(tasks/data/derive.py) into a derived `_`-column and asserted with a plain GX expectation, so
it still shows in Data Docs. GX is imported lazily (the import costs seconds);
tasks/data/gx.py runs the suite.

Each check is an error (the data cannot train a meaningful model: it stops the run) or a
warning (risky: printed and recorded, the run goes on). `data.validation.severity` sets it for
the checks where that is a choice; every other check is an error. The label checks are in
tasks/data/label_checks.py.
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
from tasks.data.labels import LabelMerge, normalise_labels
from tuneline.config import DataParams, ValidationParams

REQUIRED = ("text", "label")
CONTROL_CHARS = r"[\x00-\x08\x0B-\x1F]"  # C0 controls except \t and \n
TEXT_CHECKS = tuple(["text_not_null", "text_is_str", "text_not_empty", "text_not_whitespace"])
TEXT_CHECKS += ("text_length", "long_texts", "text_no_nul")
LABEL_CHECKS = tuple(["label_not_null", "label_scalar", "label_in_set", "label_case"])
LABEL_CHECKS += ("label_one_type", "min_classes", "class_in_every_split", "min_class_share")
ERROR, WARNING = "error", "warning"
Describe = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Check:
    """One named check: a GX expectation plus how to say what it found."""

    name: str
    expectation: Any  # a great_expectations Expectation (GX is imported lazily)
    describe: Describe  # GX result dict -> finding, e.g. "3 rows have empty text"
    examples: pd.Series | None = None  # rows to show where GX reports no row ids
    severity: str = ERROR  # ERROR | WARNING


@dataclass(frozen=True)
class Outcome:
    """A check after the run: passed, or its finding and up to 3 example row numbers."""

    name: str
    success: bool
    finding: str = ""
    rows: tuple[int, ...] = ()
    severity: str = ERROR


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


def severity_of(name: str, params: ValidationParams) -> str:
    """The check's severity: `data.validation.severity.<name>`, else ERROR (not a choice)."""
    return str(params.severity.model_dump().get(name, ERROR))


def _check(
    name: str,
    kind: str,
    describe: Describe,
    examples: Any = None,
    severity: str = ERROR,
    **kw: Any,
) -> Check:
    """`kind` is the GX class name without its `Expect` prefix, to keep the tables short."""
    # GX's own severity field shows the choice in Data Docs (GX calls an error "critical")
    gx_severity = "warning" if severity == WARNING else "critical"
    meta = {"check": name, "severity": severity}
    expectation = getattr(_gxe(), f"Expect{kind}")(**kw, meta=meta, severity=gx_severity)
    return Check(name, expectation, describe, examples, severity)


def _text_checks(params: ValidationParams) -> list[Check]:
    lo, hi, long = params.min_chars, params.max_chars, params.long_text_chars
    sev = {n: severity_of(n, params) for n in TEXT_CHECKS}

    def lengths(r: dict[str, Any]) -> str:
        seen = sorted({int(v) for v in r.get("partial_unexpected_list", [])})
        return (
            f"{r.get('unexpected_count', 0)} rows have a text length outside [{lo}, {hi}] "
            f"characters (lengths: {fmt(seen)})"
        )

    def long_texts(r: dict[str, Any]) -> str:
        seen = sorted({int(v) for v in r.get("partial_unexpected_list", [])})
        return (
            f"{r.get('unexpected_count', 0)} rows are longer than {long} characters "
            f"(lengths: {fmt(seen)}); a model reads only its first tokens "
            "(train.max_seq_len), and serving refuses texts over serve.max_chars"
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
          severity=sev["text_not_empty"], column="text", regex=r"\A\Z"),
        c("text_not_whitespace", "ColumnValuesToNotMatchRegex", _count("have whitespace-only text"),
          severity=sev["text_not_whitespace"], column="text", regex=r"\A\s+\Z"),
        # on the length, not the text: a 1 MB text must not be copied into Data Docs
        c("text_length", "ColumnValuesToBeBetween", lengths,
          column="_text_length", min_value=lo, max_value=hi),
        c("long_texts", "ColumnValuesToBeBetween", long_texts,
          severity=sev["long_texts"], column="_text_length", max_value=long),
        c("text_no_nul", "ColumnValuesToNotMatchRegex", controls,
          severity=sev["text_no_nul"], column="text", regex=CONTROL_CHARS),
    ]  # fmt: skip


def _duplicate_checks(frame: pd.DataFrame, params: ValidationParams) -> list[Check]:
    def finding(rate: float, what: str) -> Describe:
        def describe(r: dict[str, Any]) -> str:
            n = int(frame["_duplicate"].sum())
            return (
                f"{n / len(frame):.1%} of rows ({n} of {len(frame)}) repeat an earlier row "
                f"exactly (same text and label), above {what} {rate:.1%}; cleaning drops them"
            )

        return describe

    # `mostly` says "at most this share may be duplicates" and, unlike a mean, passes on an
    # empty frame (min_rows reports that) and points at the duplicated rows.
    hard, warn = params.max_duplicate_rate, params.warn_duplicate_rate
    return [
        _check("duplicate_rate", "ColumnValuesToBeInSet", finding(hard, "the bound"),
               column="_duplicate", value_set=[0], mostly=round(1.0 - hard, 12)),
        _check("duplicate_share", "ColumnValuesToBeInSet", finding(warn, "the warning share"),
               severity=severity_of("duplicate_share", params),
               column="_duplicate", value_set=[0], mostly=round(1.0 - warn, 12)),
    ]  # fmt: skip


def build_suite(df: pd.DataFrame, data: DataParams, *, min_class_rows: int = 1) -> Suite:
    """Every check that applies to `df`; checks needing a missing column are listed as skipped.

    Args:
        df: the rows as read (labels are normalised here, as prepare will).
        data: the `data` settings: thresholds, severities, allowed labels, label case.
        min_class_rows: the fewest distinct texts a class needs to be in every split
            (tasks/data/prepare.py MIN_CLASS_ROWS); 1 checks nothing.

    Returns:
        The suite: the derived frame, its checks, the ones skipped.
    """
    from tasks.data.label_checks import label_checks

    params = data.validation
    columns = [str(c) for c in df.columns]
    twice = [c for c in REQUIRED if columns.count(c) > 1]
    usable = df.loc[:, [c for c in df.columns if str(c) not in twice]]
    merges: tuple[LabelMerge, ...] = ()
    raw_labels = None
    if "label" in usable.columns:
        raw_labels = usable["label"]
        normal, merges = normalise_labels(raw_labels, data.label_case, data.labels)
        usable = usable.assign(label=normal)
    suite = Suite(frame=derive(usable, raw_labels))
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
    labels = tuple(str(x) for x in data.labels)
    if "label" in frame:
        suite.checks += label_checks(frame, params, labels, merges, min_class_rows)
    else:
        suite.skipped += [c for c in LABEL_CHECKS if labels or c != "label_in_set"]
    if "_duplicate" in frame:
        suite.checks += _duplicate_checks(frame, params)
    else:
        suite.skipped += ["duplicate_rate", "duplicate_share"]
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
