"""Prefect cache keys for the expensive steps: fine-tune, evaluate, compress/export.

Why Prefect's cache rather than DVC's: these steps write to MLflow and the registry, which DVC
cannot see or restore; Prefect returns the recorded small result (run id, paths, metrics) and the
artifacts stay where MLflow put them. A key is the hash of exactly what the step depends on:
the md5 of its input files, the params of that step (and the seed), and a code version (the
hash of the source files that implement it). Results are stored as JSON, never pickled.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline.io import md5_file

FINETUNE_CODE = (
    "tasks.finetune.task",
    "tasks.finetune.evaluate",
    "tasks.finetune.launcher",
    "tasks.finetune.worker",
    "tasks.finetune.checkpoints",
    "tasks.finetune.losses",
    "tuneline.models",
    "tuneline.metrics",
)
COMPRESS_CODE = (
    "tasks.compress.task",
    "tasks.compress.export",
    "tasks.compress.export",
    "tuneline.onnx_runtime",
    "tasks.compress.select",
    "tasks.compress.variants",
    "tasks.compress.distill",
    "tasks.compress.build",
    "tasks.compress.track",
    "tuneline.metrics",
)


def code_version(modules: Sequence[str]) -> str:
    """Hash of the source files of `modules`: editing any of them invalidates the cache."""
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            digest.update(f"missing:{name}".encode())
            continue
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()


def _key(parts: dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _splits(prepared_dir: Path) -> dict[str, str]:
    return {
        s: md5_file(prepared_dir / f"{s}.parquet")
        if (prepared_dir / f"{s}.parquet").exists()
        else ""
        for s in ("train", "val", "test")
    }


def finetune_fingerprint(root: Path, prepared_dir: Path, params: Any) -> str:
    """Split md5s + `train` params + seed + fine-tune code + the project it belongs to."""
    return _key(
        {
            "step": "finetune",
            "root": str(Path(root).resolve()),
            "splits": _splits(Path(prepared_dir)),
            "train": params.train.model_dump(),
            "seed": params.base.seed,
            "code": code_version(FINETUNE_CODE),
        }
    )


def finetune_key(_: Any, inputs: dict[str, Any]) -> str:
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
    """Where this configuration's fine-tune and compression outputs live."""
    finetune = runs_dir / f"finetune-{finetune_fingerprint(root, prepared_dir, params)[:16]}"
    return RunDirs(finetune=str(finetune), compress=str(finetune / "compress"))


def _model_md5(model_dir: Path) -> str:
    weights = Path(model_dir) / "model.safetensors"
    return md5_file(weights) if weights.exists() else "missing"


def evaluate_key(_: Any, inputs: dict[str, Any]) -> str:
    """Model weights md5 + split md5 + evaluation code."""
    return _key(
        {
            "step": "evaluate",
            "model": _model_md5(Path(inputs["model_dir"])),
            "split": md5_file(inputs["split_path"]),
            "labels": list(inputs["labels"]),
            "code": code_version(FINETUNE_CODE),
        }
    )


def compress_key(_: Any, inputs: dict[str, Any]) -> str:
    """Model weights md5 + split md5s + `compress` params + seed + compression code."""
    params = inputs["params"]
    return _key(
        {
            "step": "compress",
            "model": _model_md5(Path(inputs["model_dir"])),
            "splits": _splits(Path(inputs["prepared_dir"])),
            "output": str(Path(inputs["output_dir"]).resolve()),
            "parent": inputs.get("parent_run_id"),
            "compress": params.compress.model_dump(),
            "seed": params.base.seed,
            "code": code_version(COMPRESS_CODE),
        }
    )


def cached(task: Any, key_fn: Callable[[Any, dict[str, Any]], str]) -> Any:
    """The same task, its result cached under `key_fn` and persisted as JSON."""
    from prefect.cache_policies import CachePolicy

    return task.with_options(
        cache_policy=CachePolicy.from_cache_key_fn(key_fn),
        persist_result=True,
        result_serializer="json",
    )
