"""Lineage every run and model version carries: code version, data version, validation result."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tuneline.dvcfile import locked_outs
from tuneline.io import md5_file

SPLITS = ("train", "val", "test")
PREPARED = Path("data") / "prepared"
VALIDATION_REPORT = Path("data") / "validated" / "report.json"


def git_commit(root: Path | str = ".") -> str:
    """The HEAD commit, with '-dirty' when tracked files changed; 'unknown' outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def split_md5s(root: Path | str = ".") -> dict[str, str]:
    """The md5 of each split as recorded in dvc.lock (the committed data version).

    Falls back to hashing the files when there is no dvc.lock entry (tasks run outside DVC);
    those values are prefixed 'unlocked:' so they never pass for a committed version.
    """
    root = Path(root)
    recorded = {split: md5 for split, (_, md5) in _locked_splits(root).items()}
    for split in SPLITS:
        if split not in recorded:
            path = root / PREPARED / f"{split}.parquet"
            if path.exists():
                recorded[split] = "unlocked:" + md5_file(path)
    return recorded


def validation_result(root: Path | str = ".") -> dict[str, Any]:
    """The data-validation summary written by the validate stage ({} when absent)."""
    path = Path(root) / VALIDATION_REPORT
    if not path.exists():
        return {}
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def lineage_tags(root: Path | str = ".") -> dict[str, str]:
    """Flat string tags for MLflow runs and model versions."""
    tags = {"git_commit": git_commit(root)}
    for split, md5 in split_md5s(root).items():
        tags[f"data_md5_{split}"] = md5
    result = validation_result(root)
    tags["data_validation"] = "passed" if result.get("success") else "missing_or_failed"
    # checks that warned but let the run go on (data.validation.severity); details in the report
    warned = sorted({str(w).split(":", 1)[0] for w in result.get("warnings", [])})
    tags["data_validation_warnings"] = ", ".join(warned) or "none"
    return tags


def _locked_splits(root: Path) -> dict[str, tuple[Path, str]]:
    """split name -> (path relative to root, md5) for each split dvc.lock records."""
    locked = {}
    for rel, md5 in locked_outs(root).items():
        path = Path(rel)
        if path.parent == PREPARED and path.stem in SPLITS:
            locked[path.stem] = (path, md5)
    return locked


def _object_path(store: Path, md5: str) -> Path:
    # DVC 3 content-addressed layout, shared by the cache and a directory remote.
    return store / "files" / "md5" / md5[:2] / md5[2:]


def verify_splits(
    root: Path | str = ".", *, cache: bool = True, remote: Path | str | None = None
) -> dict[str, str]:
    """Re-hash every split against dvc.lock: the workspace file and, optionally, its cache
    and remote objects.

    `dvc status` trusts a file whose size and mtime match its state-DB entry, so a byte
    changed in place (mtime restored) or a rotten cache object goes unseen by it; this reads
    every byte. Call it before fine-tuning.

    Args:
        root: the DVC project.
        cache: also check the split's object in the DVC cache (.dvc/cache), when present.
        remote: a directory remote to check too (its objects must exist and match).

    Returns:
        split name -> md5 (as recorded in dvc.lock, now verified).

    Raises:
        DataValidationError: naming every bad file with the expected and the actual md5
            (or what is missing).
    """
    from tuneline.errors import DataValidationError

    root = Path(root)
    locked = _locked_splits(root)
    failures = [f"{s}: not recorded in dvc.lock" for s in SPLITS if s not in locked]
    for rel, expected in sorted(locked.values()):
        places: list[tuple[str, Path, bool]] = [("workspace", root / rel, True)]
        if cache:
            places.append(("cache", _object_path(root / ".dvc" / "cache", expected), False))
        if remote is not None:
            places.append(("remote", _object_path(Path(remote), expected), True))
        for where, path, required in places:
            if not path.is_file():
                if required:
                    failures.append(f"{where} {path}: missing (dvc.lock md5 {expected})")
                continue
            actual = md5_file(path)
            if actual != expected:
                failures.append(
                    f"{where} {path}: md5 {actual} != dvc.lock md5 {expected} "
                    f"({path.stat().st_size} bytes)"
                )
    if failures:
        raise DataValidationError(failures)
    return {split: md5 for split, (_, md5) in locked.items()}


_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}


def log_datasets(client: Any, run_id: str, root: Path | str = ".") -> int:
    """Log each split as an input of the run (`mlflow.log_input`): source its DVC path,
    digest its dvc.lock md5, context training / validation / testing. The runs table's Dataset
    column then shows the data version.

    Args:
        client: an MlflowClient on the run's store.
        run_id: the run.
        root: the DVC project.

    Returns:
        How many splits were logged (those dvc.lock or the workspace has).
    """
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for split, md5 in split_md5s(root).items():
        with warnings.catch_warnings():  # two registered local sources claim a path: same class
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(str(PREPARED / f"{split}.parquet"))
        digest = md5.removeprefix("unlocked:")
        dataset = MetaDataset(source, name=split, digest=digest)  # type: ignore[abstract]
        tags = [InputTag("mlflow.data.context", _CONTEXTS.get(split, split))]
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)
    return len(inputs)
