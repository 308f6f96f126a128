"""Prepare: clean, map labels to ids, split stratified with the seed, augment train only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.data.augment import Thesaurus, augment_train
from tasks.data.clean import clean_frame
from tasks.data.labels import normalise_labels
from tuneline.config import DataParams
from tuneline.errors import DataValidationError
from tuneline.io import md5_file, write_json, write_parquet

SPLIT_NAMES = ("train", "val", "test")
MIN_CLASS_ROWS = len(SPLIT_NAMES)  # a class needs one row in each split (class_split)


@dataclass(frozen=True)
class PrepareResult:
    """References to the prepared splits, their md5s and every row count."""

    prepared_dir: str
    md5: dict[str, str]
    sizes: dict[str, int]
    counts: dict[str, int]
    labels: tuple[str, ...]


def label_names(values: Sequence[Any], recipe: Mapping[str, Any]) -> tuple[list[str], dict]:
    """Class names in id order, and raw value -> class name.

    Built-ins name their classes (0 -> ham); user labels keep their own text. Integer labels
    sort numerically, string labels alphabetically, so ids are stable across runs.
    """
    distinct = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    named = recipe.get("label_names") or {}
    to_name = {v: str(named.get(str(v), v)) for v in distinct}
    return [to_name[v] for v in distinct], to_name


def class_split(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of a class's `n` rows go to test and to val; train keeps the rest.

    Each held-out split gets at least one row. Rounding both up can leave train nothing (4
    rows at 0.45/0.45 would be 2 + 2), so the larger held-out part gives rows back until train
    has one: from MIN_CLASS_ROWS rows on, every split holds the class. A large class is never
    changed by that (its train share is far above one row).
    """
    n_test, n_val = max(1, round(n * test_fraction)), max(1, round(n * val_fraction))
    while n_test + n_val >= n and max(n_test, n_val) > 1:
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n_test, n_val


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Row indices per split; each class is split in the same proportions.

    Returns indices sorted ascending so the written files do not depend on shuffling order.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLIT_NAMES}
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        n_test, n_val = class_split(len(idx), val_fraction, test_fraction)
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    return {name: np.sort(np.concatenate(p)) for name, p in parts.items()}


def stratified_sample(labels: np.ndarray, n: int, seed: int, fewest: int = 2) -> np.ndarray:
    """At most `n` row indices keeping class proportions (the max_rows knob).

    Each class keeps at least `fewest` rows (MIN_CLASS_ROWS), so a rare class still reaches
    every split.
    """
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        k = max(fewest, round(n * len(idx) / len(labels)))
        keep.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))


def prepare_splits(
    raw: pd.DataFrame,
    recipe: Mapping[str, Any],
    params: DataParams,
    seed: int,
    thesaurus: Thesaurus,
    out_dir: Path,
    report_dir: Path,
) -> PrepareResult:
    """Turn validated raw rows into train/val/test parquet files and labels.json.

    Args:
        raw: validated frame with `text` and `label` (raw values).
        recipe: source.json of the raw data (label names for built-ins).
        params: the `data` settings.
        seed: base seed (splits and augmentation).
        thesaurus: synonyms for augmentation.
        out_dir: data/prepared; every file is written atomically, after all checks passed.
        report_dir: where the leakage check writes its report.

    Raises:
        DataValidationError: texts leak across splits, or cleaning left a class too few rows
            to reach every split (nothing is written then).
    """
    from tasks.data.validate import check_leakage

    labels, _ = normalise_labels(raw["label"], params.label_case, params.labels)
    cleaned, counts = clean_frame(raw.assign(label=labels), params.clean)
    names, to_name = label_names(list(cleaned["label"]), recipe)
    ids = {name: i for i, name in enumerate(names)}
    cleaned["label"] = cleaned["label"].map(lambda v: ids[to_name[v]]).astype("int64")
    fewest = MIN_CLASS_ROWS
    keep = stratified_sample(cleaned["label"].to_numpy(), params.max_rows, seed, fewest)
    sampled = cleaned.iloc[keep].reset_index(drop=True)
    sizes = sampled["label"].value_counts()
    small = [f"{names[i]!r}: {n}" for i, n in sizes.items() if n < fewest]
    if small:
        # validation counted distinct raw texts; cleaning can merge more (HTML, spacing)
        raise DataValidationError(
            [
                f"class_in_every_split: rows per class after cleaning {'; '.join(small)}: a "
                "stratified split puts a row of each class in test, val and train, so a class "
                f"needs {fewest}"
            ]
        )
    index = stratified_split(
        sampled["label"].to_numpy(), params.val_fraction, params.test_fraction, seed
    )
    splits = {name: sampled.iloc[idx].reset_index(drop=True) for name, idx in index.items()}
    check_leakage(splits, report_dir=report_dir)
    held_out = set(splits["val"]["text"]) | set(splits["test"]["text"])
    splits["train"] = augment_train(splits["train"], params.augment, seed, thesaurus, held_out)
    for name in ("val", "test"):
        splits[name] = splits[name].assign(augmented=False)
    for name in SPLIT_NAMES:
        write_parquet(out_dir / f"{name}.parquet", splits[name][["text", "label", "augmented"]])
    write_json(out_dir / "labels.json", {"labels": names})
    stats = {
        **{k: int(v) for k, v in asdict(counts).items()},
        "rows_sampled": len(sampled),
        "augmented_rows": int(splits["train"]["augmented"].sum()),
        **{f"rows_{name}": len(splits[name]) for name in SPLIT_NAMES},
    }
    write_json(out_dir / "stats.json", stats)
    return PrepareResult(
        prepared_dir=str(out_dir),
        md5={name: md5_file(out_dir / f"{name}.parquet") for name in SPLIT_NAMES},
        sizes={name: len(splits[name]) for name in SPLIT_NAMES},
        counts=stats,
        labels=tuple(names),
    )
