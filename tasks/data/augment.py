"""EDA augmentation of the training split: synonym replacement, random swap, random deletion.

Deterministic: each (row, copy) draws from its own generator seeded with (seed, row, copy),
so the output does not depend on the order rows are processed in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from tuneline.config import AugmentParams

Thesaurus = Mapping[str, Sequence[str]]


def synonym_replace(words: list[str], n: int, rng: np.random.Generator, th: Thesaurus) -> list[str]:
    """Replace up to `n` words that have synonyms with a random synonym (case kept if capital)."""
    out = list(words)
    candidates = [i for i, w in enumerate(words) if th.get(w.lower())]
    rng.shuffle(candidates)
    for i in candidates[:n]:
        choices = th[out[i].lower()]
        new = str(choices[int(rng.integers(len(choices)))])
        out[i] = new.capitalize() if out[i][:1].isupper() else new
    return out


def random_swap(words: list[str], n: int, rng: np.random.Generator) -> list[str]:
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.choice(len(out), size=2, replace=False)
        out[i], out[j] = out[j], out[i]
    return out


def random_delete(words: list[str], p: float, rng: np.random.Generator) -> list[str]:
    if len(words) < 2:
        return list(words)
    kept = [w for w in words if rng.random() >= p]
    return kept or [words[int(rng.integers(len(words)))]]


def augment_text(
    text: str, method: str, rate: float, rng: np.random.Generator, th: Thesaurus
) -> str:
    words = text.split(" ")
    n = max(1, round(rate * len(words)))
    ops: dict[str, Callable[[], list[str]]] = {
        "synonym": lambda: synonym_replace(words, n, rng, th),
        "swap": lambda: random_swap(words, n, rng),
        "delete": lambda: random_delete(words, max(rate, 1e-9), rng),
    }
    return " ".join(ops[method]())


def augment_train(
    train: pd.DataFrame,
    params: AugmentParams,
    seed: int,
    thesaurus: Thesaurus,
    forbidden: set[str] | None = None,
) -> pd.DataFrame:
    """Append `copies` augmented rows per training row, flagged in an `augmented` column.

    Only ever called on the training split: validation and test stay untouched.

    Args:
        train: training rows (`text`, `label`).
        params: the `data.augment` settings.
        seed: base seed.
        thesaurus: word -> synonyms.
        forbidden: texts an augmented row may not equal (val/test texts: no leakage).

    Returns:
        The original rows (augmented=False) followed by the new rows (augmented=True).
    """
    base = train[["text", "label"]].copy()
    base["augmented"] = False
    if not params.enabled or params.copies == 0 or not params.methods:
        return base.reset_index(drop=True)
    seen = set(base["text"]) | (forbidden or set())
    rows = []
    for pos, (text, label) in enumerate(zip(base["text"], base["label"], strict=True)):
        for copy in range(params.copies):
            rng = np.random.default_rng([seed, pos, copy])
            method = params.methods[int(rng.integers(len(params.methods)))]
            new = augment_text(text, method, params.rate, rng, thesaurus)
            if new and new not in seen:
                seen.add(new)
                rows.append((new, label, True))
    extra = pd.DataFrame(rows, columns=["text", "label", "augmented"])
    out = pd.concat([base, extra], ignore_index=True)
    out["augmented"] = out["augmented"].astype(bool)
    return out
