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
from tuneline.config import DataParams
from tuneline.io import md5_file, write_json, write_parquet

SPLIT_NAMES = ("train", "val", "test")


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
        n_test = max(1, round(len(idx) * test_fraction))
        n_val = max(1, round(len(idx) * val_fraction))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    return {name: np.sort(np.concatenate(p)) for name, p in parts.items()}


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """At most `n` row indices keeping class proportions (the max_rows knob)."""
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        k = max(2, round(n * len(idx) / len(labels)))
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
        DataValidationError: texts leak across splits (nothing is written then).
    """
    from tasks.data.validate import check_leakage

    cleaned, counts = clean_frame(raw, params.clean)
    names, to_name = label_names(list(cleaned["label"]), recipe)
    ids = {name: i for i, name in enumerate(names)}
    cleaned["label"] = cleaned["label"].map(lambda v: ids[to_name[v]]).astype("int64")
    keep = stratified_sample(cleaned["label"].to_numpy(), params.max_rows, seed)
    sampled = cleaned.iloc[keep].reset_index(drop=True)
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
