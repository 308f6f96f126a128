"""Calibration: expected calibration error, a temperature fitted on validation, the diagram.

The temperature divides the logits before the softmax (serving/predictor.py reads it from
variant.json), so it changes the probabilities the endpoint returns, never its labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax


def probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of logits / temperature, float64."""
    out: np.ndarray = softmax(logits.astype(np.float64) / temperature, axis=-1)
    return out


def ece(probs: np.ndarray, y: Sequence[int], bins: int) -> float:
    """Top-label expected calibration error over `bins` equal-width confidence bins.

    Args:
        probs: class probabilities [n, classes].
        y: true class ids.
        bins: number of bins over [0, 1].

    Returns:
        sum over bins of (rows in bin / n) x |accuracy - mean confidence| (0 for no rows).
    """
    if len(probs) == 0:
        return 0.0
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == np.asarray(y)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        rows = which == b
        if rows.any():
            total += rows.mean() * abs(float(right[rows].mean()) - float(conf[rows].mean()))
    return float(total)


def fit_temperature(logits: np.ndarray, y: Sequence[int], low: float, high: float) -> float:
    """The temperature in [low, high] that minimises the negative log-likelihood of `y`.

    Args:
        logits: validation logits [n, classes].
        y: validation class ids.
        low: smallest temperature searched.
        high: largest.

    Returns:
        The fitted temperature (1.0 for no rows).
    """
    if len(logits) == 0:
        return 1.0
    z = logits.astype(np.float64)
    idx = np.asarray(y)

    def nll(log_t: float) -> float:
        return float(-log_softmax(z / np.exp(log_t), axis=-1)[np.arange(len(idx)), idx].mean())

    bounds = (float(np.log(low)), float(np.log(high)))
    found = minimize_scalar(nll, bounds=bounds, method="bounded")
    # the bounded search stops short of an end; a model best at an end gets that end
    return float(np.exp(min((float(found.x), *bounds), key=nll)))


def reliability_diagram(
    before: np.ndarray, after: np.ndarray, y: Sequence[int], bins: int, target: Path, title: str
) -> Path:
    """Accuracy per confidence bin, before and after the temperature, as a PNG.

    Args:
        before: test probabilities at temperature 1.
        after: test probabilities at the fitted temperature.
        y: test class ids.
        bins: confidence bins.
        target: the PNG to write.
        title: the plot's title.

    Returns:
        `target`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.linspace(0.0, 1.0, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", label="perfect")
    for probs, name in ((before, "T = 1"), (after, "fitted T")):
        conf, right = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(y)
        which = np.minimum((conf * bins).astype(int), bins - 1)
        acc = [right[which == b].mean() if (which == b).any() else np.nan for b in range(bins)]
        ax.plot(centers, acc, "o-", label=f"{name} (ECE {ece(probs, y, bins):.3f})")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left")
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return target
