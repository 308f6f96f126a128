"""Lineage every run and model version carries: code version, data version, validation result."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

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
    recorded: dict[str, str] = {}
    lock = root / "dvc.lock"
    if lock.exists():
        data = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
        for stage in (data.get("stages") or {}).values():
            for out in stage.get("outs", []):
                path = Path(out["path"])
                if path.parent == PREPARED and path.stem in SPLITS:
                    recorded[path.stem] = out["md5"]
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
    return tags
