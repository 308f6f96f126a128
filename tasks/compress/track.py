"""MLflow lineage for compression: one child run per variant under the fine-tune run, and the
Pareto table + latency/accuracy plot on the parent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXPERIMENT = "tuneline"


def _client() -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    from tuneline.settings import get_settings

    uri = get_settings().tracking_uri
    mlflow.set_tracking_uri(uri)  # set here, never at import
    return MlflowClient(tracking_uri=uri)


@dataclass(frozen=True)
class ParentRun:
    """The MLflow run the variants' child runs hang from.

    Attributes:
        client: an MlflowClient on the configured tracking URI.
        run_id: the parent run.
        experiment_id: its experiment (the children are created there).
        created: compression created it (no fine-tune run), so compression also ends it.
    """

    client: Any
    run_id: str
    experiment_id: str
    created: bool


def open_parent(parent_run_id: str | None) -> ParentRun:
    """The parent run of this compression.

    Without a fine-tune run (compression run on its own) a 'compress' run stands in as parent.

    Args:
        parent_run_id: the fine-tune run, or None.

    Returns:
        The parent run and its client.
    """
    client = _client()
    if parent_run_id:
        exp_id = str(client.get_run(parent_run_id).info.experiment_id)
        return ParentRun(client, parent_run_id, exp_id, False)
    from tuneline import registry

    exp_id = registry.experiment_id(EXPERIMENT)
    run = client.create_run(exp_id, run_name="compress", tags={"tuneline.step": "compress"})
    return ParentRun(client, run.info.run_id, exp_id, True)


def log_variant(
    parent: ParentRun,
    name: str,
    method: str,
    settings: Mapping[str, Any],
    metrics: Mapping[str, float],
    parity: Mapping[str, float],
    onnx_dir: Path | None,
    lineage: Mapping[str, str],
) -> str:
    """Create the child run of one candidate with its settings, metrics and ONNX directory.

    Args:
        parent: the parent run.
        name: the variant.
        method: how it was made (tag).
        settings: logged as params (values cut at 500 characters).
        metrics: its scores.
        parity: logged as parity_<key> metrics.
        onnx_dir: logged as the `onnx` artifact directory; None for a dropped candidate
            (its run ends FAILED, its reason in the `tuneline.dropped` tag).
        lineage: tags (git commit, split md5s, validation; `dropped`), prefixed `tuneline.`.

    Returns:
        The child run id.
    """
    from mlflow.entities import Metric, Param

    client, parent_run_id = parent.client, parent.run_id
    tags = {
        "mlflow.parentRunId": parent_run_id,
        "tuneline.parent_run_id": parent_run_id,
        "tuneline.step": "compress",
        "tuneline.variant": name,
        "tuneline.method": method,
        **{f"tuneline.{k}": str(v) for k, v in lineage.items()},
    }
    run = client.create_run(parent.experiment_id, run_name=name, tags=tags)
    run_id = run.info.run_id
    values = {**metrics, **{f"parity_{k}": v for k, v in parity.items()}}
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), 0, 0) for k, v in sorted(values.items())],
        params=[Param(str(k), str(v)[:500]) for k, v in sorted(settings.items())],
    )
    if onnx_dir is None:
        client.set_terminated(run_id, status="FAILED")
        return str(run_id)
    client.log_artifacts(run_id, str(onnx_dir), artifact_path="onnx")
    client.set_terminated(run_id)
    return str(run_id)


def plot_pareto(
    scores: Mapping[str, Mapping[str, float]],
    chosen: str,
    path: Path,
    front: set[str],
    objective: str,
) -> None:
    """Speed (the objective) against accuracy, the front joined, the chosen candidate marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "throughput" if objective == "throughput" else "latency_p95_ms"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, m in scores.items():
        colour = "tab:red" if name == chosen else ("tab:blue" if name in front else "tab:gray")
        ax.scatter(m[key], m["accuracy"], color=colour, zorder=3)
        ax.annotate(
            name, (m[key], m["accuracy"]), fontsize=7, xytext=(4, 4), textcoords="offset points"
        )
    pts = sorted((scores[n][key], scores[n]["accuracy"]) for n in front)
    if len(pts) > 1:
        ax.plot(*zip(*pts, strict=True), color="tab:blue", linestyle="--", linewidth=1)
    ax.set_xlabel("rows/s at the serving batch size" if key == "throughput" else "p95 ms, batch 1")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"compression candidates (chosen: {chosen})")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def log_parent(parent: ParentRun, files: list[Path], chosen: str, chosen_run: str | None) -> None:
    """Attach the Pareto table and plot to the parent and tag the choice.

    Args:
        parent: the parent run (ended here when compression created it).
        files: logged under the `compression` artifact directory.
        chosen: the chosen variant's name.
        chosen_run: its child run.
    """
    client = parent.client
    for path in files:
        client.log_artifact(parent.run_id, str(path), artifact_path="compression")
    client.set_tag(parent.run_id, "tuneline.chosen_variant", chosen)
    if chosen_run:
        client.set_tag(parent.run_id, "tuneline.chosen_variant_run_id", chosen_run)
    if parent.created:
        client.set_terminated(parent.run_id)


def fail_parent(parent: ParentRun) -> None:
    """Tag the parent: no candidate could be served (ended FAILED when compression created it).

    Args:
        parent: the parent run.
    """
    parent.client.set_tag(parent.run_id, "tuneline.compress", "failed")
    if parent.created:
        parent.client.set_terminated(parent.run_id, status="FAILED")
