"""Running an ONNX variant directory with ONNX Runtime: sessions, prediction, timing.

A variant directory holds model.onnx (self-contained), the tokenizer files, labels.json and
variant.json. Serving, the promotion gate, compression scoring and the benchmark all load it
through `OnnxClassifier`, so they measure the same thing that is served.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.json"
VARIANT_FILE = "variant.json"
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"


def encode(
    tokenizer: Any, texts: Sequence[str], max_length: int, *, pad_to_max: bool = False
) -> dict[str, np.ndarray]:
    """Tokenize `texts` into the int64 arrays every exported graph takes."""
    enc = tokenizer(
        list(texts),
        padding="max_length" if pad_to_max else True,
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    return {name: np.asarray(enc[name], dtype=np.int64) for name in INPUT_NAMES}


def cuda_available() -> bool:
    """Whether ONNX Runtime can run on a GPU here (the FP16 variant needs it)."""
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def make_session(onnx_path: Path | str, num_threads: int, *, use_gpu: bool = False) -> Any:
    """An InferenceSession with a fixed thread count, so every variant is timed alike.

    Args:
        onnx_path: the model file.
        num_threads: intra-op threads (0 = let ORT decide); inter-op is pinned to 1.
        use_gpu: run on CUDA (falls back to CPU for unsupported nodes).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if use_gpu:
        providers = ["CUDAExecutionProvider", *providers]
    return ort.InferenceSession(str(onnx_path), opts, providers=providers)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return out


class OnnxClassifier:
    """A loaded ONNX variant: tokenizer + session + label names.

    Args:
        variant_dir: model.onnx, tokenizer files, labels.json (variant.json optional).
        num_threads: intra-op threads for ORT.
        max_length: truncation length; default from variant.json `max_seq_len`, else the
            tokenizer's model_max_length capped at 512.
        use_gpu: run on CUDA.
    """

    def __init__(
        self,
        variant_dir: Path | str,
        *,
        num_threads: int = 1,
        max_length: int | None = None,
        use_gpu: bool = False,
    ) -> None:
        from transformers import AutoTokenizer

        self.variant_dir = Path(variant_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(
            str(self.variant_dir), trust_remote_code=False
        )
        self.labels: list[str] = list(
            json.loads((self.variant_dir / LABELS_FILE).read_text("utf-8"))["labels"]
        )
        meta_path = self.variant_dir / VARIANT_FILE
        self.meta: dict[str, Any] = (
            json.loads(meta_path.read_text("utf-8")) if meta_path.exists() else {}
        )
        self.max_length = int(
            max_length
            or self.meta.get("max_seq_len")
            or min(int(self.tokenizer.model_max_length), 512)
        )
        self.session = make_session(self.variant_dir / MODEL_FILE, num_threads, use_gpu=use_gpu)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Logits for already-encoded inputs."""
        out: np.ndarray = self.session.run([OUTPUT_NAME], feeds)[0]
        return out.astype(np.float32, copy=False)

    def predict_logits(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Logits [len(texts), num_labels], float32, computed in batches."""
        chunks = [
            self.run(encode(self.tokenizer, texts[i : i + batch_size], self.max_length))
            for i in range(0, len(texts), batch_size)
        ]
        if not chunks:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(chunks, axis=0)

    def predict(
        self, texts: Sequence[str], batch_size: int = 32
    ) -> list[tuple[str, int, list[float]]]:
        """(label, class id, class probabilities) for each text."""
        probs = softmax(self.predict_logits(texts, batch_size))
        ids = probs.argmax(axis=-1)
        return [(self.labels[int(i)], int(i), p.tolist()) for i, p in zip(ids, probs, strict=True)]


def latency_ms(
    clf: OnnxClassifier, texts: Sequence[str], *, warmup: int = 3, pad_to_max: bool = False
) -> dict[str, float]:
    """Per-request latency at batch 1 over `texts` (model time only; tokenizing is excluded
    because it is the same for every variant).

    Returns:
        {"latency_p50_ms", "latency_p95_ms", "latency_p99_ms"}.
    """
    feeds = [encode(clf.tokenizer, [t], clf.max_length, pad_to_max=pad_to_max) for t in texts]
    for feed in feeds[:warmup]:
        clf.run(feed)
    times = []
    for feed in feeds:
        start = time.perf_counter()
        clf.run(feed)
        times.append((time.perf_counter() - start) * 1000.0)
    arr = np.asarray(times or [0.0])
    return {
        "latency_p50_ms": float(np.percentile(arr, 50)),
        "latency_p95_ms": float(np.percentile(arr, 95)),
        "latency_p99_ms": float(np.percentile(arr, 99)),
    }


def throughput(
    clf: OnnxClassifier, texts: Sequence[str], *, batch_size: int = 32, pad_to_max: bool = False
) -> tuple[float, np.ndarray]:
    """Rows per second at `batch_size` (model time only), and the logits it produced."""
    feeds = [
        encode(clf.tokenizer, texts[i : i + batch_size], clf.max_length, pad_to_max=pad_to_max)
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
