"""Prefect tasks that run the data stages through DVC, so dvc.lock records every hash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from prefect import task

from tuneline import errors
from tuneline.errors import TunelineError
from tuneline.settings import get_settings

ERRORS_DIR = "errors"


@dataclass(frozen=True)
class StageRun:
    """One DVC stage: whether it ran or was up to date, and what DVC printed."""

    name: str
    ran: bool
    log: str


def stage_env() -> dict[str, str]:
    """The environment DVC runs stage commands in: our interpreter's bin first on PATH."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["TUNELINE_HOME"] = str(get_settings().root)
    return env


def error_file(stage: str) -> Path:
    return get_settings().root / ERRORS_DIR / f"{stage}.json"


def dvc(args: list[str], root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=stage_env(),
        capture_output=True,
        text=True,
        check=False,
    )


def run_dvc_stage(name: str, root: Path, force: bool = False) -> StageRun:
    """`dvc repro -s NAME` in `root`; a failing stage re-raises its own named error.

    Raises:
        TunelineError (the stage's own subclass, e.g. DataValidationError) on failure.
    """
    err = error_file(name)
    err.unlink(missing_ok=True)
    proc = dvc(["repro", "-s", name, *(["-f"] if force else [])], root)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        if err.exists():
            info = json.loads(err.read_text(encoding="utf-8"))
            cls = getattr(errors, info["type"], TunelineError)
            if cls is errors.DataValidationError:
                raise errors.DataValidationError(info["failures"], info.get("report_path"))
            raise cls(info["message"])
        raise TunelineError(f"DVC stage '{name}' failed:\n{log.strip()[-4000:]}")
    ran = f"Running stage '{name}'" in log
    return StageRun(name=name, ran=ran, log=log)


@task(name="ingest", retries=2, retry_delay_seconds=[5, 30])
def ingest_stage(root: Path, force: bool = False) -> StageRun:
    """Fetch / copy the source (I/O: retried). `force` re-reads a user file that changed."""
    return run_dvc_stage("ingest", root, force=force)


@task(name="validate")
def validate_stage(root: Path) -> StageRun:
    return run_dvc_stage("validate", root)


@task(name="prepare")
def prepare_stage(root: Path) -> StageRun:
    return run_dvc_stage("prepare", root)


@task(name="push-data", retries=3, retry_delay_seconds=[2, 10, 30])
def push_data(root: Path) -> str:
    """Push the tracked data to the DVC remote (a directory under .tuneline/ by default)."""
    settings = get_settings()
    remote = settings.remote_dir
    Path(remote).mkdir(parents=True, exist_ok=True) if "://" not in remote else None
    proc = dvc(["remote", "add", "--local", "-f", "-d", "local", remote], root)
    if proc.returncode != 0:
        raise TunelineError(f"cannot configure the DVC remote: {proc.stderr.strip()}")
    proc = dvc(["push", "-r", "local"], root)
    if proc.returncode != 0:
        raise TunelineError(f"dvc push failed: {proc.stderr.strip()[-2000:]}")
    return remote


@task(name="verify-splits")
def verify_data(root: Path, remote: str | None = None) -> dict[str, str]:
    """Re-hash the splits (workspace, cache, optionally the remote) against dvc.lock.

    Raises:
        DataValidationError: a split differs from dvc.lock (file and both md5s named).
    """
    from tuneline.lineage import verify_splits

    return verify_splits(root, cache=True, remote=remote)
