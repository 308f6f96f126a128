"""Evaluate a fine-tuned classifier directory on one split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import softmax

from tuneline.errors import TrainingError
from tuneline.io import atomic_path, write_parquet
from tuneline.metrics import classification_metrics


@dataclass(frozen=True)
class EvalResult:
    """Scalar metrics (accuracy, macro_f1, per-class precision/recall/f1, rows) and where the
    per-row predictions (label, pred, prob_<class id>) were written."""

    metrics: dict[str, float]
    predictions_path: str


def predict_logits(model_dir: Path, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Logits of the model in `model_dir`, loaded safely.

    Args:
        model_dir: fine-tuned HF model dir.
        texts: the texts, cut to the tokenizer's model_max_length (at most 512) by the
            rule the model was trained with (truncation.json).
        batch_size: rows per forward pass.

    Returns:
        float32 logits [rows, num_labels], in input order.
    """
    from tuneline.models import load_classifier, torch_logits
    from tuneline.truncation import cut_of_dir

    model, tokenizer = load_classifier(model_dir)
    max_len = min(int(tokenizer.model_max_length), 512)
    return torch_logits(model, tokenizer, texts, max_len, batch_size, cut_of_dir(model_dir))


def evaluate_model(
    model_dir: Path,
    split_path: Path,
    labels: list[str],
    *,
    batch_size: int = 64,
    output_path: Path | None = None,
) -> EvalResult:
    """Predict every row of a split and score it.

    Args:
        model_dir: fine-tuned HF model dir (config.json, model.safetensors, tokenizer, labels.json).
        split_path: parquet with `text` and `label` (class id) columns.
        labels: class names, index = class id; must match the model's id2label.
        batch_size: rows per forward pass.
        output_path: predictions parquet; default `<model_dir>/../predictions-<split>.parquet`.

    Returns:
        EvalResult with scalar metrics and the predictions path.

    Raises:
        TrainingError: the model's labels differ from `labels`, or the split is empty.
    """
    import json

    model_dir, split_path = Path(model_dir), Path(split_path)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    model_labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    if model_labels != list(labels):
        raise TrainingError(f"{model_dir}: model labels {model_labels} differ from {list(labels)}")
    df = pd.read_parquet(split_path)
    if df.empty:
        raise TrainingError(f"{split_path}: split is empty")
    logits = predict_logits(model_dir, df["text"].tolist(), batch_size)
    pred = logits.argmax(axis=1)
    scores = classification_metrics(df["label"].tolist(), pred.tolist(), labels)
    scores.pop("confusion")
    metrics = {k: float(v) for k, v in scores.items()}
    metrics["rows"] = float(len(df))
    probs = softmax(logits, axis=1)
    out = pd.DataFrame({"text": df["text"], "label": df["label"].astype("int64"), "pred": pred})
    for i in range(len(labels)):
        out[f"prob_{i}"] = probs[:, i]
    path = output_path or model_dir.parent / f"predictions-{split_path.stem}.parquet"
    write_parquet(path, out)
    return EvalResult(metrics=metrics, predictions_path=str(path))


def plot_confusion(predictions_path: Path, labels: list[str], target: Path) -> np.ndarray:
    """Draw the confusion matrix of a predictions parquet as a PNG; returns the matrix."""
    import matplotlib

    matplotlib.use("Agg")  # no display; set here, not at import
    import matplotlib.pyplot as plt

    from tuneline.metrics import confusion

    df = pd.read_parquet(predictions_path)
    matrix = confusion(df["label"].tolist(), df["pred"].tolist(), len(labels))
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2.5, 1.2 * len(labels) + 2))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), n in np.ndenumerate(matrix):
        color = "white" if n > matrix.max() / 2 else "black"
        ax.text(j, i, str(n), ha="center", va="center", color=color)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return matrix
