"""`tuneline tune`: the Optuna study over the fine-tune knobs (tasks/tune/study.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from tuneline.errors import TunelineError
from tuneline.lineage import PREPARED


def tune(
    trials: Annotated[
        int | None, typer.Option(min=1, help="Trials to add to the study (default tune.trials).")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="Profile from configs/ (smoke, gpu); 'default' for none.")
    ] = None,
    root: Annotated[Path, typer.Option(help="Project directory.")] = Path("."),
) -> None:
    """Search learning rate, epochs, batch size, warmup and weight decay (params `tune:`) on
    validation macro-F1; write the best values into params.yaml.

    Each trial is a fine-tune whose MLflow run is a child of the study's run; a median pruner
    stops trials that fall behind. The first trial of a new study is the current params.yaml
    values, so the study reports what tuning changed. `make run` never tunes.
    """
    from flows.cli import fail, prefect_env
    from tasks.tune.study import KNOBS, run_study
    from tuneline.config import PROFILES_DIR, load_params, set_params
    from tuneline.runlock import project_lock
    from tuneline.settings import use_project
    from tuneline.yaml_layers import read_yaml

    root = root.resolve()
    use_project(root)
    try:
        with project_lock("tuneline tune"):
            if profile is not None:  # as `tuneline run --profile`: the data stages read it
                load_params(root, profile=profile)
                set_params(root, {"base.profile": profile})
            params = load_params(root)
            if not all((root / PREPARED / f"{s}.parquet").is_file() for s in ("train", "val")):
                prefect_env()
                from flows.training import training_flow

                training_flow(project_root=str(root), data_only=True)
            result = run_study(root, params, trials or params.tune.trials, enqueue_current=True)
            current = {f"train.{k}": getattr(params.train, k) for k in KNOBS}
            # the values it started from won: nothing to write (a profile's values, were they
            # written, would become the default profile's)
            changed = bool(result.best) and any(
                not math.isclose(float(v), float(current[k]), rel_tol=1e-3)
                for k, v in result.best.items()
            )
            if changed:
                set_params(root, result.best)
    except TunelineError as exc:
        fail(exc)
        return
    typer.echo(f"study {result.study} ({result.storage}), MLflow run {result.run_id}")
    for t in result.trials:
        value = "-" if t["value"] is None else f"{t['value']:.4f}"
        knobs = ", ".join(f"{k} {v:.4g}" for k, v in t["params"].items())
        typer.echo(f"  trial {t['number']:3d} {t['state']:8s} val macro-F1 {value}  {knobs}")
    if not result.best:
        typer.echo("no trial completed: params.yaml unchanged")
        return
    base = "-" if result.baseline is None else f"{result.baseline:.4f}"
    typer.echo(f"best val macro-F1 {result.best_value:.4f} (the values it started from: {base})")
    if not changed:
        typer.echo("the current values are the best found: params.yaml unchanged")
        return
    typer.echo("written to params.yaml: " + ", ".join(f"{k}={v}" for k, v in result.best.items()))
    profile_file = root / PROFILES_DIR / f"{params.base.profile}.yaml"
    overridden = sorted(
        f"train.{k}"
        for k in (read_yaml(profile_file).get("train") or {} if profile_file.is_file() else {})
        if k in KNOBS
    )
    if overridden:
        typer.echo(
            f"note: profile '{params.base.profile}' overrides {', '.join(overridden)}; those "
            "tuned values apply where it does not (e.g. the default profile)"
        )


def register_tune_cli(app: typer.Typer) -> None:
    """Add `tune` to the tuneline CLI.

    Args:
        app: the `tuneline` Typer app (flows/cli.py).
    """
    app.command()(tune)
