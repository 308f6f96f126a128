"""Prefect cache keys for the expensive steps: fine-tune (which scores the test split too) and
compress/export.

Why Prefect's cache rather than DVC's: these steps write to MLflow and the registry, which DVC
cannot see or restore; Prefect returns the recorded small result (run id, paths, metrics) and the
artifacts stay where MLflow put them. A key is the hash of exactly what the step depends on:
the md5 of its input files, the params of that step (and the seed), and a code version (the
hash of the source files that implement it). Results are stored as JSON, never pickled.

The code version is derived, not listed: every module of the step's package plus every project
module those import, transitively (tuneline.imports reads them from source).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline.imports import CODE_ROOT, package_closure
from tuneline.io import md5_file

FINETUNE_PACKAGE = "tasks.finetune"
COMPRESS_PACKAGE = "tasks.compress"


def code_version(package: str, root: Path = CODE_ROOT) -> str:
    """Hash of the source of a step package and every project module it imports.

    Args:
        package: the step package, e.g. `tasks.finetune`.
        root: the folder holding the project's top-level packages (a copy of it in tests).

    Returns:
        A sha256 hex digest that changes when any of those files changes, is added or removed.

    Raises:
        FileNotFoundError: `package` is not a package under `root`.
        SyntaxError: a reached module does not parse.
    """
    digest = hashlib.sha256()
    for name, path in sorted(package_closure(package, root).items()):
        # the name is hashed too, so moving code between modules changes the version
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _key(parts: dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _splits(prepared_dir: Path) -> dict[str, str]:
    files = {s: prepared_dir / f"{s}.parquet" for s in ("train", "val", "test")}
    return {s: md5_file(f) if f.exists() else "" for s, f in files.items()}


def finetune_fingerprint(root: Path, prepared_dir: Path, params: Any) -> str:
    """Split md5s + `train` params + seed + fine-tune code + the project it belongs to.

    Args:
        root: the project root (one project's cache never answers for another's).
        prepared_dir: the folder of the DVC-prepared splits.
        params: the loaded params.

    Returns:
        A sha256 hex digest; the code part is `code_version(FINETUNE_PACKAGE)`.
    """
    return _key(
        {
            "step": "finetune",
            "root": str(Path(root).resolve()),
            "splits": _splits(Path(prepared_dir)),
            "train": params.train.model_dump(),
            "seed": params.base.seed,
            "code": code_version(FINETUNE_PACKAGE, CODE_ROOT),
        }
    )


def finetune_key(_: Any, inputs: dict[str, Any]) -> str:
    """Prefect cache key of `finetune_classifier`: its fingerprint + where it writes.

    Args:
        _: the Prefect task run context (unused).
        inputs: the task's arguments (`prepared_dir`, `params`, `output_dir`, `project_root`).

    Returns:
        A sha256 hex digest.
    """
    return _key(
        {
            "fingerprint": finetune_fingerprint(
                inputs.get("project_root", Path(".")), inputs["prepared_dir"], inputs["params"]
            ),
            "output": str(Path(inputs["output_dir"]).resolve()),
        }
    )


@dataclass(frozen=True)
class RunDirs:
    """Content-addressed output folders: the same inputs always map to the same folder, so a
    cached result never points at files a different configuration has overwritten, and a
    crashed run resumes from its own checkpoints."""

    finetune: str
    compress: str


def plan_run_dirs(root: Path, prepared_dir: Path, params: Any, runs_dir: Path) -> RunDirs:
    """Where this configuration's fine-tune and compression outputs live.

    Args:
        root: the project root.
        prepared_dir: the folder of the DVC-prepared splits.
        params: the loaded params.
        runs_dir: the folder holding every run's outputs.

    Returns:
        The fine-tune folder (named by the fingerprint) and the compression folder inside it.
    """
    finetune = runs_dir / f"finetune-{finetune_fingerprint(root, prepared_dir, params)[:16]}"
    return RunDirs(finetune=str(finetune), compress=str(finetune / "compress"))


def _model_md5(model_dir: Path) -> str:
    weights = Path(model_dir) / "model.safetensors"
    return md5_file(weights) if weights.exists() else "missing"


def compress_key(_: Any, inputs: dict[str, Any]) -> str:
    """Prefect cache key of compression: weights md5 + split md5s + `compress` params + seed +
    output folder + parent run + compression code (`code_version(COMPRESS_PACKAGE)`).

    Args:
        _: the Prefect task run context (unused).
        inputs: the task's arguments (`model_dir`, `prepared_dir`, `output_dir`, `params`, ...).

    Returns:
        A sha256 hex digest.
    """
    params = inputs["params"]
    return _key(
        {
            "step": "compress",
            "model": _model_md5(Path(inputs["model_dir"])),
            "splits": _splits(Path(inputs["prepared_dir"])),
            "output": str(Path(inputs["output_dir"]).resolve()),
            "parent": inputs.get("parent_run_id"),
            "compress": params.compress.model_dump(),
            "behaviour": params.behaviour.model_dump(),  # every candidate's suite (tasks/behaviour)
            "seed": params.base.seed,
            "code": code_version(COMPRESS_PACKAGE, CODE_ROOT),
        }
    )


def cached(task: Any, key_fn: Callable[[Any, dict[str, Any]], str]) -> Any:
    """The same task, its result cached under `key_fn` and persisted as JSON.

    Args:
        task: a Prefect task.
        key_fn: computes the cache key from the run context and the task's arguments.

    Returns:
        The task with that cache policy.
    """
    from prefect.cache_policies import CachePolicy

    return task.with_options(
        cache_policy=CachePolicy.from_cache_key_fn(key_fn),
        persist_result=True,
        result_serializer="json",
    )
