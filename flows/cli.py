"""The `tuneline` command line: one entry point, `--help` everywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from tuneline.errors import IngestError, TunelineError

app = typer.Typer(
    help="tuneline: labelled text in, a validated, compressed, ONNX-served classifier out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def prefect_env() -> None:
    """Defaults that make Prefect's local server usable on a small machine (env wins)."""
    from tuneline.settings import get_settings

    home = get_settings().root
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    # Prefect creates its home without parents; on a fresh clone .tuneline/ does not exist yet
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false")
    if get_settings().prefect_api_url:
        os.environ["PREFECT_API_URL"] = get_settings().prefect_api_url
    elif "PREFECT_API_URL" not in os.environ:
        server = get_settings().running_service("prefect")
        if server is not None:  # `tuneline up` is running: runs show in its UI
            os.environ["PREFECT_API_URL"] = f"{server}/api"
        else:
            # Not Prefect's ephemeral server, which outlives a SIGKILLed command: ours, tied to
            # this process (unless a Prefect profile or a test harness names an API already).
            from tuneline.prefect_server import ensure_api

            timeout = float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])
            ensure_api(home / "logs" / "prefect-server.log", timeout)


def fail(exc: TunelineError) -> NoReturn:
    """Print a named error in red and exit 2: bad input is a message, never a traceback."""
    typer.secho(str(exc), fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _check_data_file(path: Path) -> None:
    """`--data` names a readable file of a supported format, or the run stops in one line."""
    from tasks.data.tables import file_format

    if not path.is_file():
        fail(IngestError(f"--data {path}: no such file (or a built-in: sms_spam, movie_reviews)"))
    try:
        file_format(path)
    except IngestError as exc:
        fail(exc)


@app.command()
def run(
    profile: Annotated[
        str | None, typer.Option(help="Profile from configs/ (smoke, gpu); 'default' for none.")
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="Built-in dataset name or a CSV / JSONL / Parquet file.")
    ] = None,
    text_col: Annotated[str | None, typer.Option(help="Text column of --data.")] = None,
    label_col: Annotated[str | None, typer.Option(help="Label column of --data.")] = None,
    data_only: Annotated[
        bool, typer.Option("--data-only", help="Stop after the data stages.")
    ] = False,
    root: Annotated[Path, typer.Option(help="Project directory.")] = Path("."),
) -> None:
    """Run the pipeline (Prefect flow flows/training.py) on the configured data.

    Options are written into params.yaml first, as `dvc exp run -S` would, so DVC and the
    code see one set of settings and dvc.lock records which ones built the data.
    """
    from tuneline.config import load_params
    from tuneline.runlock import project_lock
    from tuneline.settings import use_project

    root = root.resolve()
    use_project(root)
    updates: dict[str, Any] = {}
    if profile is not None:
        updates["base.profile"] = profile
    if data is not None:
        builtin = data in ("sms_spam", "movie_reviews")
        if not builtin:
            _check_data_file(Path(data))
        updates["data.source"] = data if builtin else str(Path(data).resolve())
    if text_col is not None:
        updates["data.text_col"] = text_col
    if label_col is not None:
        updates["data.label_col"] = label_col
    try:
        # one run per project: two would share params.yaml, the DVC workspace and the run dirs
        with project_lock("tuneline run"):
            # refuse bad values (a source inside a DVC stage output too) before touching it
            params = load_params(root, profile=updates.get("base.profile"), overrides=updates)
            from flows.cli_run import run_flow

            summary = run_flow(root, updates, params.base.progress_seconds, data_only)
    except TunelineError as exc:
        fail(exc)
        return
    typer.echo(summary.render(brief=True))


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="ingest | validate | prepare")],
    root: Annotated[Path, typer.Option(help="Project directory.")] = Path("."),
) -> None:
    """Run one data stage body (what dvc.yaml calls; use `dvc repro` to run them tracked)."""
    from tasks.data.dvc_stages import error_file
    from tasks.data.stages import STAGES, run_stage
    from tuneline.settings import use_project

    use_project(root)
    if name not in STAGES:
        typer.secho(f"unknown stage '{name}' (one of {', '.join(STAGES)})", err=True)
        raise typer.Exit(code=2)
    try:
        run_stage(name, root.resolve())
    except TunelineError as exc:
        # the flow's task reads this to re-raise the same named error with every finding
        err = error_file(name)
        err.parent.mkdir(parents=True, exist_ok=True)
        err.write_text(
            json.dumps(
                {
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "failures": list(getattr(exc, "failures", [])),
                    "report_path": getattr(exc, "report_path", None),
                }
            ),
            encoding="utf-8",
        )
        fail(exc)


@app.command()
def up(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each server.")] = 240.0,
    root: Annotated[Path, typer.Option(help="Project directory.")] = Path("."),
    stack: Annotated[
        str,
        typer.Option(
            help="embedded: Prefect + MLflow on SQLite; server: PostgreSQL, S3, MLflow and "
            "Prefect servers, work pool and worker (README: Scaling out)."
        ),
    ] = "embedded",
) -> None:
    """Start a local Prefect server and MLflow tracking server (127.0.0.1, state in .tuneline/)."""
    from tuneline.settings import use_project

    use_project(root)
    from flows.cli_gate import start_gate
    from tuneline.services import start
    from tuneline.settings import get_settings

    if stack != "embedded":
        from tuneline.stack import start_cli

        start_cli(stack, get_settings().root, root, timeout, typer.echo, fail)
        return
    try:
        services = {**start(get_settings().root, timeout), "gate": start_gate(root, timeout)}
    except TunelineError as exc:
        fail(exc)
        return
    for service in services.values():
        typer.echo(f"{service.name:8s} UI: {service.url}")
    typer.echo("tuneline commands now use these servers; `tuneline down` stops them.")


@app.command()
def down(
    root: Annotated[Path, typer.Option(help="Project directory.")] = Path("."),
) -> None:
    """Stop the servers started by `tuneline up`."""
    from tuneline.settings import use_project

    use_project(root)
    from tuneline.services import stop
    from tuneline.settings import get_settings
    from tuneline.stack import stop as stop_stack

    outcome = {**stop_stack(get_settings().root), **stop(get_settings().root)}
    for name, what in outcome.items():
        typer.echo(f"{name}: {what}")
    if not outcome:
        typer.echo("nothing was running")


@app.command()
def schedule(
    root: Annotated[Path, typer.Option(help="Project directory.")] = Path("."),
) -> None:
    """Serve the retraining deployment on its cron schedule (params.retrain) until Ctrl-C."""
    from tuneline.config import load_params
    from tuneline.settings import use_project

    use_project(root)
    try:
        params = load_params(root)
    except TunelineError as exc:
        fail(exc)
        return
    prefect_env()
    from prefect import serve

    from flows.retraining import build_deployment

    deployment = build_deployment(str(root.resolve()), params)
    typer.echo(
        f"serving deployment '{params.retrain.deployment}' on cron '{params.retrain.cron}' "
        f"({params.retrain.timezone}); see it in the Prefect UI (`tuneline up`)"
    )
    serve(deployment)


def _register_commands() -> None:
    # registry and serving commands live beside their code; registering them imports nothing heavy
    from flows.cli_gate import register_gate_cli
    from flows.cli_registry import register_cli
    from flows.cli_status import register_status_cli
    from flows.cli_tune import register_tune_cli

    register_cli(app)
    register_status_cli(app)
    register_gate_cli(app)
    register_tune_cli(app)


_register_commands()


def main() -> None:
    """The `tuneline` console script."""
    app(prog_name="tuneline")


if __name__ == "__main__":
    main()
