"""The model card of one registered version: markdown for its Description (which the MLflow UI
renders on the version page) and a standalone HTML page with the plots, logged beside it.

Everything on it is read back from where the pipeline put it: the version's lineage tags, the
DVC-pinned splits, the validation report, the fine-tune run (params, test metrics, confusion
matrix) and the compression search logged on that run (Pareto table, plot, selection).
"""

from __future__ import annotations

import base64
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tuneline import registry
from tuneline.lineage import PREPARED, SPLITS, validation_result

DESCRIPTION_LIMIT = 5000  # MLflow's model version description column
CARD_DIR = "model_card"  # artifact folder on the version's run
TRAIN_KEYS = ("model", "epochs", "learning_rate", "batch_size", "max_seq_len", "loss", "seed")


@dataclass(frozen=True)
class Card:
    """A rendered card: `markdown` (fits the Description) and `html`, plus the plot files."""

    markdown: str
    html: str
    plots: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """What the gate decided, for the card: outcome, every reason, the champion compared with,
    and what the gate measured on the served artifact (p95 latency, size, accuracy)."""

    outcome: str
    reasons: tuple[str, ...]
    champion: str | None
    measured: dict[str, float] = field(default_factory=dict)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _data_section(root: Path | None, tags: dict[str, str]) -> str:
    if root is None:
        md5s = ", ".join(f"{s} `{tags.get(f'data_md5_{s}', '?')}`" for s in SPLITS)
        return f"## Data\nSplit md5s (dvc.lock): {md5s}."
    labels_path = root / PREPARED / "labels.json"
    labels = json.loads(labels_path.read_text())["labels"] if labels_path.is_file() else []
    rows: list[list[Any]] = []
    for split in SPLITS:
        path = root / PREPARED / f"{split}.parquet"
        md5 = tags.get(f"data_md5_{split}", "not recorded")
        if not path.is_file():
            rows.append([split, f"`{md5}`", "-", "-"])
            continue
        y = pd.read_parquet(path, columns=["label"])["label"]
        counts = y.value_counts(normalize=True).sort_index()
        balance = ", ".join(
            f"{labels[int(i)] if int(i) < len(labels) else i} {share:.1%}"
            for i, share in counts.items()
        )
        rows.append([split, f"`{md5}`", len(y), balance])
    report = validation_result(root)
    warnings = [str(w).split(":", 1)[0] for w in report.get("warnings", [])]
    verdict = "passed" if report.get("success") else "missing or failed"
    return (
        "## Data\n"
        + _table(["split", "md5 (dvc.lock)", "rows", "class balance"], rows)
        + f"\n\nValidation: **{verdict}**; warnings: {', '.join(warnings) or 'none'}. "
        f"Code: `{tags.get('git_commit', 'unknown')}`."
    )


def _run(run_id: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return registry.with_retries(lambda: registry.client().get_run(run_id))
    except MlflowException:
        return None


def _finetune_section(run: Any | None) -> str:
    if run is None:
        return "## Fine-tune\nNo fine-tune run recorded for this version."
    params = run.data.params
    shown = [[k, params[f"train.{k}"]] for k in TRAIN_KEYS if f"train.{k}" in params]
    budget = [[k[len("train.") :], v] for k, v in sorted(params.items()) if "budget" in k]
    metrics = run.data.metrics
    scores = [
        [k[len("test_") :], f"{v:.4f}"]
        for k, v in sorted(metrics.items())
        if k.startswith("test_")
        and "recall_" not in k
        and "precision_" not in k
        and not k.startswith("test_f1_")
    ]
    recall = [
        [k[len("test_recall_") :], f"{v:.4f}"]
        for k, v in sorted(metrics.items())
        if k.startswith("test_recall_")
    ]
    return (
        f"## Fine-tune (run `{run.info.run_id}`)\n"
        + _table(["param", "value"], shown + budget)
        + "\n\n### Test metrics (PyTorch)\n"
        + _table(["metric", "value"], scores)
        + "\n\n### Per-class recall\n"
        + _table(["class", "recall"], recall)
    )


def _download(run: Any | None, path: str, dest: Path) -> Path | None:
    from mlflow.exceptions import MlflowException

    if run is None:
        return None
    try:
        local = registry.client().download_artifacts(run.info.run_id, path, str(dest))
    except (MlflowException, OSError):
        return None
    return Path(local)


def _compression_section(tags: dict[str, str], pareto: Path | None, verdict: Verdict) -> str:
    measured = verdict.measured
    chosen = _table(
        ["variant", "runtime", "precision", "p95 ms (gate, batch 1)", "size MB"],
        [
            [
                tags.get("variant_name", "?"),
                tags.get("runtime", "?"),
                tags.get("precision", "?"),
                f"{measured['p95_latency_ms']:.2f}" if "p95_latency_ms" in measured else "-",
                f"{measured.get('size_mb', float(tags.get('size_mb', 'nan'))):.2f}",
            ]
        ],
    )
    table = "No compression table recorded."
    if pareto is not None:
        lines = pareto.read_text(encoding="utf-8").splitlines()
        table = "\n".join(line for line in lines if not line.startswith("# "))
    return f"## Compression\nServed artifact:\n\n{chosen}\n\n{table.strip()}"


def _gate_section(verdict: Verdict) -> str:
    fails = [r for r in verdict.reasons if not r.startswith("PASS")]
    passes = [r for r in verdict.reasons if r.startswith("PASS")]
    champion = f"v{verdict.champion}" if verdict.champion else "none (first champion)"
    lines = "\n".join(f"- {r}" for r in [*fails, *passes])
    return f"## Gate: **{verdict.outcome}** (compared with champion {champion})\n{lines}"


def _fit(sections: list[str], note: str) -> str:
    """Join sections, dropping the last lines of the longest until it fits the Description."""
    text = "\n\n".join(sections)
    while len(text) > DESCRIPTION_LIMIT:
        longest = max(range(len(sections)), key=lambda i: len(sections[i]))
        lines = sections[longest].splitlines()
        if len(lines) <= 3:
            return text[: DESCRIPTION_LIMIT - len(note) - 2] + "\n\n" + note
        sections[longest] = "\n".join(lines[:-1])
        text = "\n\n".join(sections) + "\n\n" + note
    return text


def render_card(name: str, version: str, root: Path | str | None, verdict: Verdict) -> Card:
    """Build the card of `name` v`version` from what the registry and the project hold.

    Args:
        name: registered model; version: the version.
        root: the project whose pinned splits and validation report the version was gated on
            (None: the card lists the split md5s only).
        verdict: the gate's outcome, reasons and the champion compared with.

    Returns:
        The Card (markdown within DESCRIPTION_LIMIT; the HTML holds all of it and the plots).
    """
    tags = registry.version_tags(name, version)
    run = _run(tags.get("finetune_run_id", ""))
    with tempfile.TemporaryDirectory(prefix="tuneline-card-") as tmp:
        plots = {}
        for artifact in ("confusion_matrix.png", "compression/pareto.png"):
            local = _download(run, artifact, Path(tmp))
            if local is not None and local.is_file():
                plots[Path(artifact).name] = local.read_bytes()
        pareto = _download(run, "compression/pareto.md", Path(tmp))
        sections = [
            f"# Model card: {name} v{version}",
            _gate_section(verdict),
            _data_section(None if root is None else Path(root), tags),
            _finetune_section(run),
            _compression_section(tags, pareto, verdict),
        ]
    plots_md = ", ".join(f"`{CARD_DIR}/{p}`" for p in plots) or "none recorded"
    sections.append(f"Plots: {plots_md} (and `{CARD_DIR}/card.html`) on this version's run.")
    full = "\n\n".join(sections)
    markdown = _fit(list(sections), f"(cut to fit; the whole card: `{CARD_DIR}/card.html`)")
    return Card(markdown, _html(name, version, full, plots), plots)


def _html(name: str, version: str, markdown: str, plots: dict[str, bytes]) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    images = "".join(
        f'<h2>{title}</h2><img alt="{title}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode()}">'
        for title, data in plots.items()
    )
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:0 .6em}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{name} v{version}</title>"
        f"<style>{style}</style></head><body>{body}{images}</body></html>"
    )
