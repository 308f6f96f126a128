"""Timing an ONNX variant: the one latency function and the batch throughput measurement.

Compression scores every variant with them and the promotion gate times its candidate and
the champion with `latency_ms`, so "p95 latency" is computed one way everywhere. Not bundled
into the Bento (serving needs no timing).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from serving.predictor import OnnxTextClassifier

T = TypeVar("T")


def latency_ms(
    call: Callable[[T], object], inputs: Sequence[T], *, warmup: int = 3
) -> dict[str, float]:
    """Per-call latency of `call(x)` for each `x` in `inputs`, one call at a time.

    What is timed is the caller's choice: compression passes `clf.run` over pre-encoded
    single-row feeds (model time only, since tokenizing costs every variant the same); the
    gate passes a one-text `predict` (tokenize, run, softmax: what a request costs).

    Args:
        call: the function timed.
        inputs: one call per item, in order.
        warmup: untimed calls on the first items first (buffers are allocated on first run).

    Returns:
        {"latency_p50_ms", "latency_p95_ms", "latency_p99_ms"}; zeros for no inputs.
    """
    for item in inputs[:warmup]:
        call(item)
    times = []
    for item in inputs:
        start = time.perf_counter()
        call(item)
        times.append((time.perf_counter() - start) * 1000.0)
    return latency_summary(times)


def latency_summary(times_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 of per-call times in milliseconds (what `latency_ms` returns).

    Args:
        times_ms: one figure per call.

    Returns:
        {"latency_p50_ms", "latency_p95_ms", "latency_p99_ms"}; zeros for no calls.
    """
    arr = np.asarray(list(times_ms) or [0.0])
    return {
        "latency_p50_ms": float(np.percentile(arr, 50)),
        "latency_p95_ms": float(np.percentile(arr, 95)),
        "latency_p99_ms": float(np.percentile(arr, 99)),
    }


def throughput(
    clf: OnnxTextClassifier,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    pad_to_max: bool = False,
) -> tuple[float, np.ndarray]:
    """Rows per second at `batch_size` (model time only), and the logits it produced.

    Args:
        clf: the loaded variant.
        texts: every text is run once, in batches of `batch_size`.
        batch_size: texts per session run.
        pad_to_max: pad every batch to the classifier's max_length.

    Returns:
        (rows per second, logits [len(texts), num_labels] float32).
    """
    feeds = [
        clf.encode(texts[i : i + batch_size], pad_to_max=pad_to_max)
        for i in range(0, len(texts), batch_size)
    ]
    if feeds:
        clf.run(feeds[0])  # warm-up: first run allocates buffers
    outs = []
    start = time.perf_counter()
    for feed in feeds:
        outs.append(clf.run(feed))
    elapsed = time.perf_counter() - start
    logits = np.concatenate(outs) if outs else np.zeros((0, len(clf.labels)), np.float32)
    return (len(texts) / elapsed if elapsed > 0 else 0.0), logits
