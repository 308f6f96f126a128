"""One tuneline run per project at a time: an exclusive, non-blocking lock on the state directory.

Two runs that retrain at once would share `.tuneline/runs/finetune-<hash>/` (and params.yaml,
the DVC workspace, the Bento store). The lock is fcntl.flock on <TUNELINE_HOME>/run.lock: the
kernel releases it when its holder dies, however it dies, so a file left by a killed run never
blocks. The pid and start time written into the file only tell the next caller who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from tuneline.errors import TunelineError
from tuneline.settings import get_settings

LOCK_FILE = "run.lock"


class RunLocked(TunelineError):
    """Another tuneline run (or promote) holds the project's lock."""


def lock_path() -> Path:
    return get_settings().root / LOCK_FILE


def describe_holder(path: Path) -> str:
    """Who holds the lock, as far as its file says (it may be mid-write: then "unknown")."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "pid unknown"
    if not isinstance(info, dict):
        return "pid unknown"
    holder = f"pid {info.get('pid', 'unknown')}, started {info.get('started', 'unknown')}"
    return f"{holder}, {info['command']}" if info.get("command") else holder


@contextlib.contextmanager
def project_lock(command: str) -> Iterator[Path]:
    """Hold the project's run lock for the block, or refuse at once.

    Args:
        command: what holds it (e.g. "tuneline run"), shown to whoever is refused.

    Yields:
        The lock file's path.

    Raises:
        RunLocked: another process holds it (its pid and start time in the message).
    """
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by subprocesses
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(
                f"another tuneline run holds the lock ({describe_holder(path)}); "
                f"wait for it or stop it (lock file: {path})"
            ) from None
        started = datetime.now(UTC).isoformat(timespec="seconds")
        record = json.dumps({"pid": os.getpid(), "started": started, "command": command})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode("utf-8"), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
