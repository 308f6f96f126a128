"""CLI commands for the registry: promote a version, roll back, serve the champion."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import typer

from tuneline.config import Params, load_params
from tuneline.errors import PromotionRefused, TunelineError
from tuneline.settings import use_project


class UsageError(TunelineError):
    """A command-line argument that names nothing: no such version, model or port."""


def _settings(root: Path, profile: str | None) -> Params:
    """The settings for a registry command; a bad profile or params.yaml is a named error."""
    from flows.cli import fail

    try:
        return load_params(root, profile)
    except TunelineError as exc:
        fail(exc)


def _registered(name: str, command: str) -> Any:
    """The registered model `name`, or a one-line error saying none is registered yet."""
    from mlflow.exceptions import MlflowException

    from flows.cli import fail
    from tuneline import registry

    # a fresh project's first registry call creates the store, which MLflow logs at INFO
    store_log = logging.getLogger("mlflow.store.db.utils")
    level = store_log.level
    store_log.setLevel(logging.WARNING)
    try:
        return registry.with_retries(lambda: registry.client().get_registered_model(name))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        hint = "`tuneline run` registers one"
        fail(UsageError(f"{command}: no model '{name}' is registered yet ({hint})"))
    finally:
        store_log.setLevel(level)


def _check_version(name: str, version: str) -> None:
    """Refuse a version that is no number, or that `name` does not have, in one line."""
    from flows.cli import fail
    from tuneline import registry

    if not version.isdigit() or int(version) < 1:
        fail(UsageError(f"promote: version must be a number (1, 2, ...), got {version!r}"))
    _registered(name, f"promote {version}")
    found = registry.with_retries(
        lambda: registry.client().search_model_versions(f"name = '{name}'")
    )
    versions = sorted(int(v.version) for v in found)
    if int(version) not in versions:
        have = ", ".join(map(str, versions)) or "none"
        fail(UsageError(f"promote: '{name}' has no version {version} (versions: {have})"))


def _check_splits(root: Path) -> None:
    """The gate scores on the pinned test split: refuse in one line when it is not there."""
    from flows.cli import fail
    from tuneline.lineage import PREPARED

    missing = [n for n in ("labels.json", "test.parquet") if not (root / PREPARED / n).is_file()]
    if missing:
        fail(
            UsageError(
                f"promote: {PREPARED}/ has no {' or '.join(missing)}; "
                "`dvc checkout` (or `tuneline run`) puts the data version back first"
            )
        )


def promote(
    version: str = typer.Argument(..., help="registered model version to gate and promote"),
    profile: str = typer.Option(None, help="params profile (configs/<name>.yaml)"),
    root: Path = typer.Option(Path("."), help="project directory"),
) -> None:
    """Run the promotion gate for VERSION; promote it to @champion if it passes."""
    from flows.cli import fail, prefect_env
    from tuneline.runlock import project_lock

    use_project(root)
    params = _settings(root, profile)
    _check_version(params.gate.registered_model, version)
    _check_splits(root)
    try:
        # a promotion builds Bentos and moves @champion: never beside a run of this project
        with project_lock(f"tuneline promote {version}"):
            prefect_env()  # Prefect's local server needs a longer start-up timeout
            from flows.cli_run import logged
            from flows.promotion import promotion_flow

            with logged(params.base.progress_seconds):  # Prefect's tracebacks into the log
                result = promotion_flow(version, profile=profile, project_root=str(root))
    except PromotionRefused as exc:
        typer.echo(f"version {version} refused:")
        for reason in exc.reasons:
            typer.echo(f"  {reason}")
        raise typer.Exit(1) from exc
    except TunelineError as exc:
        fail(exc)
        return
    for reason in result.reasons:
        typer.echo(f"  {reason}")
    if result.outcome == "lost_race":
        typer.echo(f"lost the race: champion is now {result.champion}; nothing changed")
        raise typer.Exit(2)
    typer.echo(f"champion: {result.name} v{result.champion} (Bento {result.bento_tag})")


def rollback(
    profile: str = typer.Option(None, help="params profile"),
    root: Path = typer.Option(Path("."), help="project directory"),
) -> None:
    """Move @champion back to the previous champion (audited)."""
    from tasks.release.promote import rollback_champion

    use_project(root)
    name = _settings(root, profile).gate.registered_model
    _registered(name, "rollback")
    move = rollback_champion(name)
    if move.outcome != "moved":
        typer.echo(f"nothing to roll back: champion is {move.from_version}")
        raise typer.Exit(1)
    typer.echo(f"champion: {name} v{move.from_version} -> v{move.to_version}")


def serve(
    profile: str = typer.Option(None, help="params profile"),
    root: Path = typer.Option(Path("."), help="project directory"),
    host: str = typer.Option(None, help="bind address (default params.serve.host)"),
    port: int = typer.Option(None, help="port (default params.serve.port)"),
    follow: bool = typer.Option(
        False, "--follow", help="keep serving @champion as it moves (promotions, rollbacks)"
    ),
    force: bool = typer.Option(False, "--force", help="serve a champion no gate passed"),
) -> None:
    """Serve the current champion's Bento (foreground; Ctrl-C stops it).

    With --follow, a proxy on host:port forwards to the champion's Bento and switches, with no
    failed request, to the next champion's once it answered (tasks/release/follow.py).
    """
    from flows.cli import fail
    from tasks.release.guard import ungated
    from tasks.release.package import bentoml_env
    from tuneline import registry
    from tuneline.processes import run_foreground

    use_project(root)
    params = _settings(root, profile)
    if port is not None and not 1 <= port <= 65535:
        fail(UsageError(f"serve: --port must be in 1-65535, got {port}"))
    name = params.gate.registered_model
    version = registry.alias_version(name, registry.CHAMPION)
    if version is None:
        typer.echo(f"{name} has no champion yet; run the pipeline or `tuneline promote`")
        raise typer.Exit(1)
    tag = registry.version_tags(name, version).get("bento_tag")
    if not tag:
        typer.echo(f"{name} v{version} has no Bento; run `tuneline promote {version}`")
        raise typer.Exit(1)
    if not force and (why := ungated(name, version)) is not None:
        typer.echo(why)
        raise typer.Exit(1)
    host = host or params.serve.host
    port = port or params.serve.port
    typer.echo(f"serving {name} v{version} ({tag}) on http://{host}:{port}")
    typer.echo(
        f"try: curl -s -X POST http://{host}:{port}/predict "
        "-H 'Content-Type: application/json' -d '{\"texts\": [\"hello there\"]}'"
    )
    if follow:
        raise typer.Exit(_follow(params, host, port, version, tag, force=force))
    cmd = [sys.executable, "-m", "bentoml", "serve", tag, "--host", host, "--port", str(port)]
    raise typer.Exit(run_foreground(cmd, env=bentoml_env()))


def _follow(params: Params, host: str, port: int, version: str, tag: str, *, force: bool) -> int:
    """`serve --follow`: the proxy and the Bentos behind it, until a signal stops them; a
    champion no gate passed is not switched to unless `force`."""
    from flows.cli import fail
    from tasks.release.follow import follow_champion
    from tasks.release.guard import ungated

    name = params.gate.registered_model

    typer.echo(f"following @champion: polled every {params.serve.follow_poll_s:g} s")
    try:
        return follow_champion(
            params,
            host=host,
            port=port,
            version=version,
            tag=tag,
            check=(lambda v: None) if force else (lambda v: ungated(name, v)),
            say=typer.echo,
        )
    except TunelineError as exc:
        fail(exc)


def register_cli(app: typer.Typer) -> None:
    """Add `promote`, `rollback` and `serve` to the tuneline CLI.

    Args:
        app: the `tuneline` Typer app (flows/cli.py).
    """
    for command in (promote, rollback, serve):
        app.command()(command)
