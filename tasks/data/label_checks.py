"""The label half of the validation suite (tasks/data/checks.py builds the whole one).

What is an error here: no label, a label that is no single value (a list, a mapping), labels of
mixed Python types, too few classes, and a class too small to appear in every split of the
stratified split. What is a warning by default (data.validation.severity): a small class
share, and labels that differed only by case or surrounding whitespace and were merged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from tasks.data.checks import Check, _check, _count, _distinct, fmt, severity_of
from tasks.data.labels import LabelMerge
from tuneline.config import ValidationParams


def label_checks(
    frame: pd.DataFrame,
    params: ValidationParams,
    labels: Sequence[str],
    merges: Sequence[LabelMerge],
    min_class_rows: int,
) -> list[Check]:
    """The label checks on the derived frame.

    Args:
        frame: what tasks/data/derive.py derived (labels normalised).
        params: `data.validation`.
        labels: allowed labels as text; empty allows any.
        merges: what label normalising merged (tasks/data/labels.py).
        min_class_rows: the fewest distinct texts a class needs to be in every split.

    Returns:
        The checks, in report order.
    """
    counts = frame["_label"].value_counts(dropna=True)
    types = frame["_label_type"].value_counts(dropna=True)
    rare_type = frame["_label_type"].isin(types.index[1:])
    rare_class = frame["_class_share"] < params.min_class_share
    class_rows = frame.groupby("_label")["_class_rows"].first()

    def outside(r: dict[str, Any]) -> str:
        seen = _distinct(r.get("partial_unexpected_list", []))
        return (
            f"{r.get('unexpected_count', 0)} rows have labels outside {list(labels)}: "
            f"{', '.join(seen[:5])}"
        )

    def not_scalar(r: dict[str, Any]) -> str:
        bad = frame.loc[frame["_label_scalar"] == 0, "label"]
        kinds = sorted({type(v).__name__ for v in bad})
        return (
            f"{len(bad)} rows have a label that is not one value ({', '.join(kinds)}; "
            f"e.g. {fmt(bad.head(2).tolist())}): a label is one text or number per row"
        )

    def merged(r: dict[str, Any]) -> str:
        return (
            f"{int(frame['_label_merged'].sum())} rows had a label differing from its class "
            "only in case or surrounding whitespace (data.label_case) and were read as that "
            f"class: {'; '.join(m.describe() for m in merges)}"
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

    def too_small(r: dict[str, Any]) -> str:
        small = [f"{name!r}: {int(n)}" for name, n in class_rows.items() if n < min_class_rows]
        return (
            f"distinct texts per class {'; '.join(small)}: a stratified split puts a row of "
            f"each class in test, val and train, so a class needs {min_class_rows} "
            "(collect more rows of it, merge it into another class, or drop it)"
        )

    def rare(r: dict[str, Any]) -> str:
        total = int(counts.sum())
        small = [
            f"{name!r} has {n} rows ({n / total:.1%})"
            for name, n in counts.items()
            if n / total < params.min_class_share
        ]
        return (
            f"{'; '.join(small)}: below the class share {params.min_class_share:.1%}; "
            "watch its recall (the gate checks every class's)"
        )

    c = _check
    checks = [
        c("label_not_null", "ColumnValuesToNotBeNull", _count("have no label"), column="_label"),
        c("label_scalar", "ColumnValuesToBeInSet", not_scalar, column="_label_scalar",
          value_set=[1]),
    ]  # fmt: skip
    if labels:
        checks += [
            c("label_in_set", "ColumnValuesToBeInSet", outside,
              severity=severity_of("label_in_set", params), column="_label", value_set=list(labels))
        ]  # fmt: skip
    checks += [
        c("label_case", "ColumnValuesToBeInSet", merged,
          severity=severity_of("label_case", params), column="_label_merged", value_set=[0]),
        c("label_one_type", "ColumnUniqueValueCountToBeBetween", mixed, rare_type,
          column="_label_type", max_value=1),
        c("min_classes", "ColumnUniqueValueCountToBeBetween", few_classes,
          column="_label", min_value=params.min_classes),
        c("class_in_every_split", "ColumnValuesToBeBetween", too_small,
          column="_class_rows", min_value=min_class_rows),
        c("min_class_share", "ColumnValuesToBeBetween", rare, rare_class,
          severity=severity_of("min_class_share", params),
          column="_class_share", min_value=params.min_class_share),
    ]  # fmt: skip
    return checks
