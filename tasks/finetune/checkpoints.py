"""Training checkpoints that are either complete or ignored.

The HF Trainer writes `checkpoint-N/` file by file, so a crash can leave a half-written one.
A checkpoint counts only once its completion marker exists: a JSON file written LAST (after
every rank has finished its files and they are fsynced) listing each file and its size. On a
rerun the newest checkpoint whose marker matches its files is resumed; incomplete ones are
deleted before the workers start, so no worker can ever see them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

MARKER = "tuneline_complete.json"
PREFIX = "checkpoint-"
_STEP_RE = re.compile(rf"^{PREFIX}(\d+)$")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_sizes(ckpt: Path) -> dict[str, int]:
    return {
        str(p.relative_to(ckpt)): p.stat().st_size
        for p in sorted(ckpt.rglob("*"))
        if p.is_file() and p.name != MARKER
    }


def write_marker(ckpt: Path, step: int) -> None:
    """Flush every file of `ckpt` to disk, then atomically write its completion marker."""
    sizes = _file_sizes(ckpt)
    for rel in sizes:
        _fsync(ckpt / rel)
    tmp = ckpt / f".{MARKER}.tmp"
    tmp.write_text(json.dumps({"step": step, "files": sizes}, indent=1), encoding="utf-8")
    _fsync(tmp)
    os.replace(tmp, ckpt / MARKER)
    _fsync(ckpt)  # make the rename itself durable


def is_complete(ckpt: Path) -> bool:
    """True when `ckpt` has a marker and every file it lists exists with the same size."""
    marker = ckpt / MARKER
    if not marker.is_file():
        return False
    try:
        recorded: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    files = recorded.get("files") or {}
    if not files:
        return False
    for rel, size in files.items():
        path = ckpt / rel
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def list_checkpoints(ckpt_root: Path) -> list[tuple[int, Path]]:
    """Every `checkpoint-N` directory under `ckpt_root`, oldest step first."""
    if not ckpt_root.is_dir():
        return []
    found = []
    for child in ckpt_root.iterdir():
        match = _STEP_RE.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_complete(ckpt_root: Path) -> Path | None:
    """The newest complete checkpoint, or None when there is none."""
    for _, path in reversed(list_checkpoints(ckpt_root)):
        if is_complete(path):
            return path
    return None


def remove_partial(ckpt_root: Path) -> list[Path]:
    """Delete every incomplete checkpoint. Call only while no training runs on `ckpt_root`.

    Returns:
        The directories removed.
    """
    removed = []
    for _, path in list_checkpoints(ckpt_root):
        if not is_complete(path):
            shutil.rmtree(path)
            removed.append(path)
    return removed


class CompletionMarkerCallback(TrainerCallback):
    """Writes the completion marker once every rank has finished writing a checkpoint.

    `on_save` runs after the Trainer wrote weights, optimizer, scheduler, RNG and trainer
    state (and rotated old checkpoints); the barrier waits for the other ranks' RNG files.
    """

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir) / f"{PREFIX}{state.global_step}"
            if ckpt.is_dir():
                # The Trainer pickles its arguments here for humans; nothing reads it back, and
                # a checkpoint should hold no pickle that is never verified: drop it.
                (ckpt / "training_args.bin").unlink(missing_ok=True)
                write_marker(ckpt, state.global_step)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()


def prepare_checkpoints(output_dir: Path, fp: str) -> Path | None:
    """Drop partial checkpoints (and all of them when `fp`, the settings' fingerprint, differs
    from the one run.json recorded); return the checkpoint to resume, if any."""
    ckpt_root = output_dir / "checkpoints"
    record = output_dir / "run.json"
    old_fp = json.loads(record.read_text("utf-8")).get("fingerprint") if record.is_file() else None
    if old_fp != fp:  # stale checkpoints of another configuration must never be resumed
        for _, path in list_checkpoints(ckpt_root):
            shutil.rmtree(path)
        return None
    remove_partial(ckpt_root)
    return latest_complete(ckpt_root)
