"""Prefect tasks that run the data stages through DVC, so dvc.lock records every hash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prefect import task

from tuneline import errors
from tuneline.errors import TunelineError
from tuneline.lineage import PREPARED, SPLITS
from tuneline.processes import run_child
from tuneline.settings import get_settings
from tuneline.summary import PipelineSummary

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
    """Where `tuneline stage NAME` records a failure for the task to re-raise it by name.

    Args:
        stage: the stage name.
    """
    return get_settings().root / ERRORS_DIR / f"{stage}.json"


def dvc(args: list[str], root: Path) -> subprocess.CompletedProcess[str]:
    """`dvc ARGS` in `root`, tied to this process (a killed run leaves no dvc behind).

    Args:
        args: the dvc arguments.
        root: the DVC project.

    Returns:
        The finished process, stdout and stderr as text.
    """
    return run_child([sys.executable, "-m", "dvc", *args], env=stage_env(), cwd=root)


def run_dvc_stage(name: str, root: Path, force: bool = False) -> StageRun:
    """`dvc repro -s NAME` in `root`; a failing stage re-raises its own named error.

    Args:
        name: the stage.
        root: the DVC project.
        force: rerun it even if DVC finds it up to date.

    Returns:
        StageRun: whether it ran and what DVC printed.

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


@task(retries=2, retry_delay_seconds=[5, 30])
def ingest_dataset(root: Path, force: bool = False) -> StageRun:
    """The `ingest` stage: fetch / copy the source (I/O: retried).

    Args:
        root: the DVC project.
        force: rerun even if DVC thinks it unchanged (a user file that changed in place).

    Returns:
        StageRun: whether it ran and what DVC printed.

    Raises:
        IngestError: the source cannot be read or fetched.
    """
    return run_dvc_stage("ingest", root, force=force)


@task
def validate_dataset(root: Path) -> StageRun:
    """The `validate` stage: every data check on the raw rows, with Data Docs.

    Args:
        root: the DVC project.

    Returns:
        StageRun: whether it ran and what DVC printed.

    Raises:
        DataValidationError: a check failed (every finding named).
    """
    return run_dvc_stage("validate", root)


@task
def prepare_dataset(root: Path) -> StageRun:
    """The `prepare` stage: clean, split, leakage check, augment train only.

    Args:
        root: the DVC project.

    Returns:
        StageRun: whether it ran and what DVC printed.

    Raises:
        DataValidationError: texts leak across splits.
    """
    return run_dvc_stage("prepare", root)


@task(retries=3, retry_delay_seconds=[2, 10, 30])
def push_dataset(root: Path) -> str:
    """Push the tracked data to the DVC remote (a directory under .tuneline/ by default).

    Args:
        root: the DVC project.

    Returns:
        The remote's location.

    Raises:
        TunelineError: the remote cannot be configured or the push failed (retried first).
    """
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


@task
def verify_dataset(root: Path, remote: str | None = None) -> dict[str, str]:
    """Re-hash the splits (workspace, cache, optionally the remote) against dvc.lock.

    Args:
        root: the DVC project.
        remote: a directory remote to check as well.

    Returns:
        split name -> md5 as recorded in dvc.lock, now verified: the data version.

    Raises:
        DataValidationError: a split differs from dvc.lock (file and both md5s named).
    """
    from tuneline.lineage import verify_splits

    return verify_splits(root, cache=True, remote=remote)


@task
def summarize_dataset(
    root: Path, data_md5: dict[str, str], stages: Sequence[StageRun]
) -> PipelineSummary:
    """The data half of the run summary: verified md5s, row counts, which stages ran.

    Args:
        root: the DVC project.
        data_md5: what `verify_dataset` returned.
        stages: the stage runs, in order.

    Returns:
        The summary, its model half still empty.
    """
    prepared = root / PREPARED
    stats = json.loads((prepared / "stats.json").read_text(encoding="utf-8"))
    return PipelineSummary(
        data_md5=dict(data_md5),
        split_sizes={n: int(stats[f"rows_{n}"]) for n in SPLITS},
        data_counts=stats,
        stages_ran={s.name: s.ran for s in stages},
    )
