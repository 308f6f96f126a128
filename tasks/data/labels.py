"""Label values as a user means them: surrounding whitespace stripped, case merged on request.

A hand-made CSV easily holds `spam`, `Spam ` and `SPAM` for one class. Validation and prepare
read labels through `normalise_labels`, so both see the same classes; every merge is reported
(the `label_case` check) instead of silently becoming extra classes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd


@dataclass(frozen=True)
class LabelMerge:
    """Spellings read as one class: `into` and each other raw spelling with its row count."""

    into: str
    spellings: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        merged = ", ".join(f"{raw!r} ({n} rows)" for raw, n in self.spellings)
        return f"{merged} -> {self.into!r}"


def normalise_labels(
    labels: pd.Series, case: Literal["merge", "preserve"], allowed: Sequence[str] = ()
) -> tuple[pd.Series, tuple[LabelMerge, ...]]:
    """Strip text labels and, with `case="merge"`, read labels differing only by case as one.

    A merged class takes the spelling from `allowed` when one matches, else its most frequent
    spelling (ties: the first in sort order), so the class names are stable across runs.
    Non-text labels (ints, lists, ...) are returned as they are, for validation to judge.

    Args:
        labels: raw label values.
        case: `data.label_case`.
        allowed: `data.labels` (may be empty).

    Returns:
        The normalised labels (same index) and one LabelMerge per class that had more than
        one raw spelling, sorted by class.
    """

    def key(text: str) -> str:
        return text.casefold() if case == "merge" else text

    texts = [v for v in labels if isinstance(v, str)]
    stripped = Counter(v.strip() for v in texts)
    canonical: dict[str, str] = {}
    for spelling, _ in sorted(stripped.items(), key=lambda kv: (-kv[1], kv[0])):
        canonical.setdefault(key(spelling), spelling)
    for name in allowed:
        if key(name) in canonical:
            canonical[key(name)] = name

    def normal(value: Any) -> Any:
        return canonical[key(value.strip())] if isinstance(value, str) else value

    out = labels.map(normal).astype(object)
    raw_counts = Counter(texts)
    groups: dict[str, list[tuple[str, int]]] = {}
    for raw, n in sorted(raw_counts.items()):
        groups.setdefault(normal(raw), []).append((raw, n))
    merges = tuple(
        LabelMerge(into, tuple(s for s in spellings if s[0] != into))
        for into, spellings in sorted(groups.items())
        if len(spellings) > 1 or spellings[0][0] != into
    )
    return out, tuple(m for m in merges if m.spellings and m.into != "")
