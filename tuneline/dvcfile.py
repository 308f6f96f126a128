"""What DVC's two files say: the paths dvc.yaml declares as stage outputs, and the hashes
dvc.lock recorded for them.

Before it runs a stage DVC deletes that stage's outputs, and afterwards it rewrites them, so
nothing a user wants to keep may live there. The paths are read from dvc.yaml itself, never
from a list kept by hand. dvc.lock is read here only, for lineage and the split checks.
"""

from __future__ import annotations

from pathlib import Path

import yaml

DVC_FILE = "dvc.yaml"
LOCK_FILE = "dvc.lock"
OUTPUT_KINDS = ("outs", "metrics", "plots")  # DVC removes every one of them before a run


def stage_outputs(root: Path | str) -> dict[Path, str]:
    """Every output of every stage in `root`/dvc.yaml, resolved, mapped to its stage's name.

    Args:
        root: the project directory (the DVC repo).

    Returns:
        absolute output path -> stage name; {} when there is no (readable) dvc.yaml.
    """
    root = Path(root).resolve()
    try:
        loaded = yaml.safe_load((root / DVC_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, yaml.YAMLError):
        return {}  # no pipeline here, or DVC itself will report the broken file
    stages = loaded.get("stages") if isinstance(loaded, dict) else None
    found: dict[Path, str] = {}
    for name, stage in (stages or {}).items():
        if not isinstance(stage, dict):
            continue
        wdir = root / str(stage.get("wdir", "."))
        for kind in OUTPUT_KINDS:
            for entry in stage.get(kind) or []:
                # an entry is a path, or {path: {cache: false, ...}}
                out = next(iter(entry)) if isinstance(entry, dict) else entry
                found[(wdir / str(out)).resolve()] = str(name)
    return found


def output_holding(path: Path | str, root: Path | str) -> tuple[Path, str] | None:
    """The stage output that `path` is, or lies inside, with its stage; None when outside all.

    Args:
        path: a file path; relative paths are taken relative to `root` (where DVC runs).
        root: the project directory.
    """
    target = (Path(root) / path).resolve()  # an absolute `path` stays itself
    for out, stage in stage_outputs(root).items():
        if target == out or out in target.parents:
            return out, stage
    return None


def locked_outs(root: Path | str) -> dict[str, str]:
    """path -> md5 of every file output recorded in `root`/dvc.lock.

    Args:
        root: the project directory (the DVC repo).

    Returns:
        output path as written in dvc.lock (relative to `root`) -> md5; directory outputs
        (md5 ending '.dir') are skipped; {} when there is no dvc.lock.
    """
    lock = Path(root) / LOCK_FILE
    if not lock.exists():
        return {}
    data = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
    outs: dict[str, str] = {}
    for stage in (data.get("stages") or {}).values():
        for out in stage.get("outs", []):
            md5 = str(out.get("md5", ""))
            if md5 and not md5.endswith(".dir"):
                outs[str(out["path"])] = md5
    return outs
