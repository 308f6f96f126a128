"""Scoring compression candidates: quality in one pass, speed measured together.

`evaluate_variant` runs every test text once through the candidate's runtime (accuracy,
per-class recall, the logits parity is judged on); `time_variants` times several candidates
in interleaved rounds, so a change in the shared machine's load meets all of them alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from serving.predictor import MODEL_FILE, OnnxTextClassifier
from serving.timing import latency_summary, throughput
from tuneline.config import Params
from tuneline.metrics import classification_metrics
from tuneline.processes import machine_cores


def quality(y: Sequence[int], logits: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class precision/recall/F1 of `logits` against `y`."""
    found = classification_metrics(list(y), logits.argmax(-1).tolist(), list(labels))
    found.pop("confusion")
    return {k: float(v) for k, v in found.items()}


def evaluate_variant(
    variant_dir: Path,
    test: tuple[Sequence[str], Sequence[int]],
    labels: Sequence[str],
    params: Params,
    *,
    use_gpu: bool = False,
) -> tuple[dict[str, float], np.ndarray]:
    """Quality of one variant directory through its runtime: every test text once, in batches
    of the serving batch size, in file order (their real lengths).

    Args:
        variant_dir: the variant.
        test: the test split (texts, class ids).
        labels: class names.
        params: settings (serve.max_batch_size).
        use_gpu: run on CUDA.

    Returns:
        (scores, logits): accuracy, macro-F1, per-class precision/recall/F1 and the file size
        in MB; the logits, on which accuracy and parity are measured.
    """
    # every core: this pass is for accuracy and parity, not speed (time_variants times)
    clf = OnnxTextClassifier(variant_dir, num_threads=machine_cores(), use_gpu=use_gpu)
    _, logits = throughput(clf, test[0], batch_size=params.serve.max_batch_size)
    scores = quality(test[1], logits, labels)
    scores["size_mb"] = (variant_dir / MODEL_FILE).stat().st_size / 2**20
    return scores, logits


def time_variants(
    variants: dict[str, tuple[Path, bool]], texts: Sequence[str], params: Params
) -> dict[str, dict[str, float]]:
    """Speed of several variants measured together, in interleaved rounds.

    Each variant is loaded once and run once untimed on every input shape it will be timed on
    (as a serving worker after its first requests: OpenVINO compiles each new input shape on
    first use). Then, compress.bench_rounds times, every variant in turn runs its share of the
    first compress.bench_rows texts at the serving batch size, then one at a time, so a
    change in the machine's load meets every variant alike (the machine is shared).

    Args:
        variants: name -> (variant directory, run on CUDA).
        texts: the test texts (their real lengths).
        params: settings (compress.bench_rows, bench_rounds, num_threads; serve.max_batch_size).

    Returns:
        name -> {"throughput": rows/s over all rounds, "latency_p50_ms", "latency_p95_ms",
        "latency_p99_ms"} (model time only: tokenizing costs every variant the same).
    """
    cp, batch = params.compress, params.serve.max_batch_size
    rows = list(texts[: cp.bench_rows])
    shares = [rows[r :: cp.bench_rounds] for r in range(cp.bench_rounds)]
    clfs = {
        name: OnnxTextClassifier(path, num_threads=cp.num_threads, use_gpu=gpu)
        for name, (path, gpu) in variants.items()
    }
    batches = {
        name: [[c.encode(s[i : i + batch]) for i in range(0, len(s), batch)] for s in shares]
        for name, c in clfs.items()
    }
    singles = {name: [[c.encode([t]) for t in s] for s in shares] for name, c in clfs.items()}
    for name, clf in clfs.items():  # warm-up: every input shape once
        shapes = {
            tuple((k, v.shape) for k, v in feed.items()): feed
            for share in batches[name] + singles[name]
            for feed in share
        }
        for feed in shapes.values():
            clf.run(feed)
    seconds = dict.fromkeys(clfs, 0.0)
    times: dict[str, list[float]] = {name: [] for name in clfs}
    for r in range(cp.bench_rounds):
        for name, clf in clfs.items():
            start = time.perf_counter()
            for feed in batches[name][r]:
                clf.run(feed)
            seconds[name] += time.perf_counter() - start
            for feed in singles[name][r]:
                start = time.perf_counter()
                clf.run(feed)
                times[name].append((time.perf_counter() - start) * 1000.0)
    return {
        name: {
            "throughput": len(rows) / seconds[name] if seconds[name] > 0 else 0.0,
            **latency_summary(times[name]),
        }
        for name in clfs
    }


def score_variant(
    variant_dir: Path,
    test: tuple[Sequence[str], Sequence[int]],
    labels: Sequence[str],
    params: Params,
    *,
    use_gpu: bool = False,
) -> tuple[dict[str, float], np.ndarray]:
    """`evaluate_variant` and `time_variants` for one variant on its own.

    Returns:
        (quality and speed scores, the logits).
    """
    scores, logits = evaluate_variant(variant_dir, test, labels, params, use_gpu=use_gpu)
    speed = time_variants({"one": (variant_dir, use_gpu)}, test[0], params)["one"]
    return {**scores, **speed}, logits
