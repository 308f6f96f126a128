"""`tuneline run`'s body: the training flow inside a run log and a snapshot of the project.

The console shows the stages' lines (tuneline/console.py) and the summary; everything else
goes to `<state dir>/logs/<run>.log`. What a run may change is copied first and put back when
it fails (tuneline/workspace.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from tuneline.errors import TunelineError


def run_flow(root: Path, updates: dict[str, Any], progress_s: float, data_only: bool) -> Any:
    """Write `updates` into params.yaml and run the training flow, its output in a run log.

    What a run changes (params.yaml, dvc.lock, every DVC stage output) is copied first and put
    back if the run fails, so the next plain run and `tuneline promote` see the project as it
    was. A failure prints its named error (or its type and message) and the log's path; the
    traceback is in the log only.

    Raises:
        typer.Exit: the run failed (2 for a named error, 1 for anything else).
    """
    from flows.cli import prefect_env
    from tuneline import console
    from tuneline.config import load_params, set_params
    from tuneline.settings import get_settings
    from tuneline.workspace import drop_snapshot, restore_snapshot, take_snapshot

    home = get_settings().root
    snap = take_snapshot(root, home / "snapshots")
    log = None
    try:
        if updates:
            set_params(root, updates)
        params = load_params(root)
        prefect_env()
        from flows.training import training_flow

        log = console.open_run_log(home / "logs", progress_s)
        # a user file can change under the same path: re-read it (same bytes -> DVC skips)
        force = params.data.source not in ("sms_spam", "movie_reviews")
        summary = training_flow(project_root=str(root), force_ingest=force, data_only=data_only)
    except BaseException as exc:
        if log is not None:  # the traceback goes to the run log, never to the console
            logging.getLogger("tuneline").error("the run failed", exc_info=True)
        restored = restore_snapshot(snap)
        console.close_run_log()
        undone = f"put back as before the run: {', '.join(restored)}" if restored else ""
        where = "; ".join(x for x in (f"full log: {log}" if log else "", undone) if x)
        if isinstance(exc, TunelineError):
            message, code = str(exc), 2
        elif isinstance(exc, KeyboardInterrupt):
            message, code = "interrupted", 130
        else:
            message, code = f"tuneline run failed: {type(exc).__name__}: {exc}", 1
        typer.secho(message, fg=typer.colors.RED, err=True)
        if where:
            typer.secho(where, err=True)
        raise typer.Exit(code=code) from None
    drop_snapshot(snap)
    logging.getLogger("tuneline").info("run summary:\n%s", summary.render())
    console.say(f"{'':9s} full log: {log}")
    console.close_run_log()
    return _compact(summary, log)


def _compact(summary: Any, log: Path) -> Any:
    """The console's summary: brief lines, the Pareto table only named (in the run log and the
    compress run)."""
    from dataclasses import replace

    table = {
        k: f"in {log} and the MLflow compress run"
        for k in summary.extra
        if k.startswith("pareto table")
    }
    return replace(summary, brief={**summary.brief, **table})


@contextlib.contextmanager
def logged(progress_s: float) -> Iterator[Path]:
    """Run the block with stdout and stderr in a run log (tuneline/console.py), as `tuneline
    run` does: a failure's traceback (Prefect's included) goes to the log, whose path is printed
    once the console is back; the exception then propagates to the command's own handling.

    Args:
        progress_s: base.progress_seconds.

    Yields:
        The log file.
    """
    from tuneline import console
    from tuneline.settings import get_settings

    log = console.open_run_log(get_settings().root / "logs", progress_s)
    try:
        yield log
    except BaseException:
        logging.getLogger("tuneline").error("failed", exc_info=True)
        console.close_run_log()
        typer.secho(f"full log: {log}", err=True)
        raise
    console.close_run_log()
