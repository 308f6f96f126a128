"""`tuneline watch`: promotion from the MLflow UI without webhooks, by polling the registry.

Where no `tuneline up` runs (the embedded sqlite store has no webhooks), it does what the
gate service's receiver does on events: a `@challenger` no gate has decided yet, or a
`tuneline.promote = requested` tag, runs the gate (the promotion flow, in this process); a
`@champion` without a passing gate decision is moved back (tasks/release/guard.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from tuneline.errors import PromotionRefused, TunelineError
from tuneline.services import Service


def _poll(root: Path, profile: str | None) -> None:
    """One pass: guard the champion, then gate every requested version."""
    from flows.cli import prefect_env
    from flows.cli_registry import _settings
    from tasks.release.guard import guard_champion
    from tasks.release.requests import promotion_wanted, requests_in_registry
    from tuneline.runlock import RunLocked, project_lock

    params = _settings(root, profile)
    name = params.gate.registered_model
    guarded = guard_champion(name, params.gate)
    if guarded.outcome in ("reverted", "allowed"):
        typer.echo(f"@champion v{guarded.version} set outside the gate: {guarded.outcome}")
    for version in requests_in_registry(name):
        skip = promotion_wanted(name, version)
        if skip is not None:
            typer.echo(f"v{version}: not started: {skip}")
            continue
        typer.echo(f"v{version}: promotion requested; running the gate")
        prefect_env()  # a Prefect server only when a flow runs
        try:
            with project_lock(f"tuneline watch: promote {version}"):
                from flows.promotion import promotion_flow

                result = promotion_flow(version, profile=profile, project_root=str(root))
            typer.echo(f"v{version}: {result.outcome}; champion v{result.champion}")
        except PromotionRefused as exc:
            typer.echo(f"v{version}: refused ({len(exc.reasons)} reasons on its tags)")
        except RunLocked as exc:
            typer.echo(f"v{version}: later: {exc}")


def watch(
    once: bool = typer.Option(False, "--once", help="poll once and exit (for cron or tests)"),
    profile: str = typer.Option(None, help="params profile"),
    root: Path = typer.Option(Path("."), help="project directory"),
) -> None:
    """Poll the registry: @challenger / tuneline.promote=requested start the gate, and a
    @champion set outside the gate is moved back (every gate.watch_interval_s, until Ctrl-C)."""
    from flows.cli import fail
    from flows.cli_registry import _registered, _settings
    from tuneline.settings import use_project

    root = root.resolve()
    use_project(root)
    params = _settings(root, profile)
    _registered(params.gate.registered_model, "watch")
    while True:
        try:
            _poll(root, profile)
        except TunelineError as exc:
            fail(exc)
        if once:
            return
        time.sleep(params.gate.watch_interval_s)


def start_gate(root: Path, timeout_s: float) -> Service:
    """`tuneline up`'s third server: the gate service (MLflow webhook receiver + the
    promotion deployment), started after MLflow and Prefect answer.

    Args:
        root: the project; timeout_s: how long to wait for it.

    Returns:
        Its service record (`tuneline down` stops it with the others).

    Raises:
        TunelineError: bad settings, or it did not come up (its log is named).
    """
    from flows.gate_service import start_gate_service
    from tuneline.config import load_params

    return start_gate_service(root, load_params(root), timeout_s)


def register_gate_cli(app: typer.Typer) -> None:
    """Add `watch` to the tuneline CLI.

    Args:
        app: the `tuneline` Typer app (flows/cli.py).
    """
    app.command()(watch)
