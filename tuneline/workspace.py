"""A run's undo: what `tuneline run` may change in a project, kept aside until it succeeds.

A run writes its --data options into params.yaml, and its DVC stages rewrite dvc.lock and
their outputs (DVC deletes a stage's outputs before it runs the stage). A run that fails half
way would leave params.yaml pointing at the bad file, dvc.lock recording it for some stages
and not others, and data/prepared/ empty, so the next plain run and `tuneline promote` fail
too. The snapshot copies those paths first; a failed run puts every one back byte for byte
(and removes what did not exist before). The outputs are read from dvc.yaml, never listed by
hand.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tuneline.dvcfile import DVC_FILE, LOCK_FILE, stage_outputs

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class Snapshot:
    """Copies of a project's run-changed paths, taken before a run.

    Attributes:
        root: the project.
        store: the directory holding the copies.
        paths: every path (relative to root) a run may change.
        present: those of them that existed when the snapshot was taken.
    """

    root: Path
    store: Path
    paths: tuple[str, ...]
    present: tuple[str, ...]


def run_paths(root: Path) -> tuple[str, ...]:
    """params.yaml, dvc.lock and every DVC stage output of `root`, relative, sorted.

    Args:
        root: the project directory.
    """
    root = root.resolve()
    outs = sorted(str(p.relative_to(root)) for p in stage_outputs(root) if p.is_relative_to(root))
    return (PARAMS_FILE, LOCK_FILE, *outs)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True)
    else:
        shutil.copy2(src, dest)


def take_snapshot(root: Path, parent: Path) -> Snapshot:
    """Copy what a run may change in `root` into a new directory under `parent`.

    Args:
        root: the project (a DVC repo with dvc.yaml; without one only params.yaml/dvc.lock).
        parent: where snapshots live (the state directory's snapshots/).

    Returns:
        The snapshot: pass it to `restore_snapshot` on failure, `drop_snapshot` otherwise.
    """
    root = root.resolve()
    parent.mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix="run-", dir=parent))
    paths = run_paths(root) if (root / DVC_FILE).exists() else (PARAMS_FILE, LOCK_FILE)
    present = []
    for rel in paths:
        if (root / rel).exists():
            _copy(root / rel, store / rel)
            present.append(rel)
    return Snapshot(root=root, store=store, paths=paths, present=tuple(present))


def changed_paths(snap: Snapshot) -> list[str]:
    """The snapshot's paths that differ now from when it was taken (added, removed, edited).

    Args:
        snap: a snapshot.
    """
    changed = []
    for rel in snap.paths:
        now, then = snap.root / rel, snap.store / rel
        if now.exists() != then.exists() or (now.exists() and not _same(now, then)):
            changed.append(rel)
    return changed


def _same(a: Path, b: Path) -> bool:
    if a.is_dir() != b.is_dir():
        return False
    if not a.is_dir():
        return a.read_bytes() == b.read_bytes()
    names = sorted(p.relative_to(a) for p in a.rglob("*"))
    if names != sorted(p.relative_to(b) for p in b.rglob("*")):
        return False
    return all(_same(a / n, b / n) for n in names if not (a / n).is_dir())


def restore_snapshot(snap: Snapshot) -> list[str]:
    """Put every path back as it was when the snapshot was taken, then drop the snapshot.

    Args:
        snap: what `take_snapshot` returned.

    Returns:
        The paths (relative) that had changed and were put back.
    """
    changed = changed_paths(snap)
    for rel in changed:
        _remove(snap.root / rel)
        if rel in snap.present:
            _copy(snap.store / rel, snap.root / rel)
    drop_snapshot(snap)
    return changed


def drop_snapshot(snap: Snapshot) -> None:
    """Delete the snapshot's copies (the run succeeded, or they were put back).

    Args:
        snap: a snapshot.
    """
    shutil.rmtree(snap.store, ignore_errors=True)
