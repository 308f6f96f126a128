"""CLI commands that read the project's state: `tuneline status` and `tuneline predict`."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from tuneline.errors import TunelineError
from tuneline.settings import use_project

METRICS = ("accuracy", "macro_f1", "latency_p95_ms", "throughput")


class PredictInputError(TunelineError):
    """`tuneline predict` was given no text, or a file it cannot read."""


def _champion(root: Path, profile: str | None, command: str) -> tuple[str, str]:
    """(registered model, champion version), or a one-line error saying there is none."""
    from flows.cli import fail
    from flows.cli_registry import UsageError, _registered, _settings
    from tuneline import registry

    name = _settings(root, profile).gate.registered_model
    _registered(name, command)
    version = registry.alias_version(name, registry.CHAMPION)
    if version is None:
        fail(UsageError(f"{command}: '{name}' has no champion yet (`tuneline run` promotes one)"))
    return name, version


def _run_metrics(run_id: str) -> dict[str, float]:
    from tuneline import registry

    if not run_id:
        return {}
    run = registry.with_retries(lambda: registry.client().get_run(run_id))
    return {k: float(v) for k, v in run.data.metrics.items()}


def _dvc_changes(root: Path) -> str:
    """What `dvc status` says: up to date, or each stage and what changed in it."""
    from tasks.data.dvc_stages import dvc

    proc = dvc(["status", "--json"], root)
    if proc.returncode != 0:
        return "dvc status failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    found = json.loads(proc.stdout or "{}")
    if not found:
        return "up to date (the next run reuses the data stages)"
    parts = []
    for stage, changes in found.items():
        what = []
        for change in changes:
            if isinstance(change, dict):
                for kind, items in change.items():
                    names = list(items) if isinstance(items, dict) else [str(items)]
                    what.append(f"{kind.replace('changed ', '')} {', '.join(names)}")
            else:
                what.append(str(change))
        parts.append(f"{stage} ({'; '.join(what)})")
    return "changed: " + "; ".join(parts)


def status(
    profile: Annotated[str | None, typer.Option(help="params profile")] = None,
    root: Annotated[Path, typer.Option(help="project directory")] = Path("."),
) -> None:
    """The champion, its data version and metrics, the last gate decision, what DVC says changed."""
    from tuneline import registry
    from tuneline.audit import read_audit
    from tuneline.lineage import split_md5s

    use_project(root)
    root = root.resolve()
    name, version = _champion(root, profile, "status")
    tags = registry.version_tags(name, version)
    mv = registry.with_retries(lambda: registry.client().get_model_version(name, version))
    metrics = _run_metrics(tags.get("variant_run_id") or mv.run_id or "")
    typer.echo(
        f"champion: {name} v{version} ({tags.get('variant_name', '?')}, "
        f"{tags.get('runtime', '?')} {tags.get('precision', '')}".rstrip()
        + ")"
    )
    shown = [f"{k} {metrics[k]:.4g}" for k in METRICS if k in metrics]
    typer.echo("  metrics: " + (", ".join(shown) or "none recorded"))
    workspace = split_md5s(root)
    data = [f"{s} {tags.get(f'data_md5_{s}', '?')[:8]}" for s in ("train", "val", "test")]
    same = all(tags.get(f"data_md5_{s}") == md5 for s, md5 in workspace.items()) and workspace
    typer.echo(
        f"  data: {', '.join(data)} ("
        + ("the workspace's data" if same else "not the workspace's data (dvc.lock differs)")
        + f"); validation {tags.get('data_validation', '?')}"
    )
    decisions = [r for r in read_audit() if r.get("name") == name]
    if decisions:
        last = decisions[-1]
        reasons = last.get("reasons") or []
        why = f": {reasons[0]}" + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else "")
        typer.echo(
            f"last decision: {last.get('event')} v{last.get('version')} "
            f"{last.get('outcome')} at {last.get('time')}" + (why if reasons else "")
        )
    else:
        typer.echo("last decision: none recorded")
    typer.echo(f"DVC: {_dvc_changes(root)}")


def _texts(texts: list[str], file: Path | None) -> list[str]:
    from flows.cli import fail

    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            fail(PredictInputError(f"predict: cannot read --file {file}: {exc}"))
        texts = [*texts, *(line for line in lines if line.strip())]
    if not texts:
        fail(PredictInputError("predict: give one or more TEXT arguments or --file F"))
    return texts


@contextlib.contextmanager
def _no_download_bar() -> Iterator[None]:
    """MLflow's "Downloading artifacts" bar off for the one download (12 redraws of noise)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    was = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if was is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = was


def predict(
    texts: Annotated[list[str] | None, typer.Argument(help="texts to classify")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="a text file, one text per line")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per text")] = False,
    profile: Annotated[str | None, typer.Option(help="params profile")] = None,
    root: Annotated[Path, typer.Option(help="project directory")] = Path("."),
) -> None:
    """Classify TEXT... (or the lines of --file) with the champion, in this process."""
    from serving.predictor import OnnxTextClassifier
    from tasks.release.register import download_version
    from tuneline.settings import get_settings

    use_project(root)
    todo = _texts(list(texts or []), file)
    name, version = _champion(root.resolve(), profile, "predict")
    local = get_settings().root / "champion" / f"{name}-v{version}"
    if not (local / "model.onnx").exists():  # a version's files never change: fetch once
        with _no_download_bar():
            download_version(name, version, local)
    model: Any = OnnxTextClassifier(local)
    for text, pred in zip(todo, model.predict(todo), strict=True):
        if as_json:
            out = {"text": text, "label": pred.label, "probabilities": pred.probabilities}
            typer.echo(json.dumps(out))
        else:
            p = pred.probabilities[pred.label]
            typer.echo(f"{pred.label}\t{p:.3f}\t{text[:80]}")


def register_status_cli(app: typer.Typer) -> None:
    """Add `status` and `predict` to the tuneline CLI.

    Args:
        app: the `tuneline` Typer app (flows/cli.py).
    """
    app.command()(status)
    app.command()(predict)
