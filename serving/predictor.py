"""The one model wrapper: an ONNX variant directory in, logits, labels and probabilities out.

The served Bento, the promotion gate, the Bento smoke test, compression (parity and scoring),
registration and the benchmarks all load a variant through `OnnxTextClassifier`, so what is
measured and checked is what is served. It depends on onnxruntime or openvino, tokenizers,
numpy and scipy only (no tuneline import) so it can be bundled into a Bento; serving/timing.py
times it.

Two runtimes read the same model.onnx: ONNX Runtime (CPU, or CUDA with `use_gpu`) and
OpenVINO (CPU; its `precision` is the inference precision hint: "bf16" runs the FP32 graph in
BF16 on CPUs with AVX-512 BF16 or AMX, and an INT8 QDQ graph in INT8 kernels with BF16 between
them). Which one serves a variant is recorded in its variant.json ("runtime", "precision").

Variant directory: model.onnx, tokenizer.json (or files AutoTokenizer reads), labels.json
({"labels": [...]}, index = class id), and optionally variant.json (may carry "max_seq_len",
"runtime": "onnxruntime" | "openvino" and "precision", e.g. "fp32", "bf16", "int8_static").
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.json"
VARIANT_FILE = "variant.json"
INPUT_NAMES = ("input_ids", "attention_mask")  # what every exported graph takes
OUTPUT_NAME = "logits"
# BERT-style position embeddings stop at 512; a larger `model_max_length` is a placeholder.
_MAX_POSITIONS = 512
ONNXRUNTIME, OPENVINO = "onnxruntime", "openvino"
RUNTIMES = (ONNXRUNTIME, OPENVINO)


@dataclass(frozen=True)
class Prediction:
    """One text's answer."""

    label: str
    label_id: int
    probabilities: dict[str, float]


# A bucket of a length-sorted batch grows while its longest text has at most BUCKET_RATIO x
# the tokens of its shortest, or while it holds fewer than BUCKET_MIN_ROWS texts (one more
# runtime call costs about as much as a few rows, so tiny buckets do not pay).
BUCKET_RATIO = 2.0
BUCKET_MIN_ROWS = 8


def length_buckets(lengths: np.ndarray) -> list[np.ndarray]:
    """Row indices of a batch grouped by token length, shortest first.

    Args:
        lengths: tokens per row.

    Returns:
        Index arrays that together hold every row once; each is run padded to its longest.
    """
    order = np.argsort(lengths, kind="stable")
    buckets, start = [], 0
    for i in range(1, len(order) + 1):
        if i == len(order) or (
            i - start >= BUCKET_MIN_ROWS
            and lengths[order[i]] > BUCKET_RATIO * lengths[order[start]]
        ):
            buckets.append(order[start:i])
            start = i
    return buckets


def _variant_info(model_dir: Path) -> dict[str, Any]:
    variant = model_dir / VARIANT_FILE
    if not variant.exists():
        return {}
    info = json.loads(variant.read_text(encoding="utf-8"))
    return info if isinstance(info, dict) else {}


def _max_length(model_dir: Path) -> int:
    value = _variant_info(model_dir).get("max_seq_len")
    if isinstance(value, int) and value > 0:
        return min(value, _MAX_POSITIONS)
    config = model_dir / "tokenizer_config.json"
    if config.exists():
        value = json.loads(config.read_text(encoding="utf-8")).get("model_max_length")
        if isinstance(value, int | float) and 0 < value <= _MAX_POSITIONS:
            return int(value)
    return _MAX_POSITIONS


def cuda_available() -> bool:
    """Whether ONNX Runtime can run on a GPU here (the FP16 variant needs it).

    Returns:
        True when the CUDA execution provider is available.
    """
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def openvino_bf16() -> bool:
    """Whether OpenVINO can compute in BF16 on this CPU (AVX-512 BF16 or AMX).

    Returns:
        True when openvino is installed and lists BF16 among the CPU's capabilities.
    """
    try:
        import openvino as ov
    except ImportError:
        return False
    return "bf16" in precision_hints(ov.Core())


def runtime_available(runtime: str) -> bool:
    """Whether `runtime` can be loaded here.

    Args:
        runtime: "onnxruntime" or "openvino".

    Returns:
        True when its Python package imports.
    """
    import importlib.util

    return runtime in RUNTIMES and importlib.util.find_spec(runtime) is not None


def make_openvino(
    onnx_path: Path | str, num_threads: int, precision: str
) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """Compile `onnx_path` for OpenVINO's CPU plugin; returns feeds -> logits.

    Args:
        onnx_path: the model file (OpenVINO reads ONNX, com.microsoft fused ops included).
        num_threads: inference threads (0 = let OpenVINO decide), one stream, latency hint.
        precision: "bf16" sets the BF16 inference precision hint; anything else runs f32
            between the graph's own (e.g. INT8 QDQ) operations.

    Returns:
        A function safe to call from several threads (one infer request per thread).
    """
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
    }
    if precision == "bf16" and "bf16" not in precision_hints(core):
        raise RuntimeError("OpenVINO cannot compute in BF16 on this CPU (no AVX-512 BF16/AMX)")
    if num_threads > 0:
        config["INFERENCE_NUM_THREADS"] = num_threads
    compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
    names = {port.get_any_name() for port in compiled.inputs}
    output = compiled.output(OUTPUT_NAME)
    local = threading.local()

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        # infer() copies its outputs (share_outputs=False): the next call cannot overwrite them
        result: np.ndarray = request.infer({k: v for k, v in feeds.items() if k in names})[output]
        return result

    return run


def precision_hints(core: Any) -> set[str]:
    """The inference precisions OpenVINO's CPU plugin offers here ("f32", "bf16", ...)."""
    caps = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return {"f32"} | ({"bf16"} if "BF16" in caps else set())


def make_session(onnx_path: Path | str, num_threads: int, *, use_gpu: bool = False) -> Any:
    """An InferenceSession with a fixed thread count, so every variant is timed alike.

    Args:
        onnx_path: the model file.
        num_threads: intra-op threads (0 = let ORT decide); inter-op is pinned to 1.
        use_gpu: run on CUDA (ORT falls back to CPU for unsupported nodes).

    Returns:
        The onnxruntime.InferenceSession.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, num_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if use_gpu:
        providers = ["CUDAExecutionProvider", *providers]
    return ort.InferenceSession(str(onnx_path), options, providers=providers)


class OnnxTextClassifier:
    """Tokenize with the variant's tokenizer, run model.onnx, return labels and probabilities."""

    def __init__(
        self,
        model_dir: Path | str,
        num_threads: int = 1,
        *,
        max_length: int | None = None,
        use_gpu: bool = False,
        runtime: str | None = None,
        precision: str | None = None,
    ) -> None:
        """Load the session and tokenizer.

        Args:
            model_dir: an ONNX variant directory (see the module docstring).
            num_threads: ORT intra-op threads (0 = let ORT decide); serving and the gate run
                on shared CPUs.
            max_length: truncation length; default variant.json `max_seq_len`, else the
                tokenizer's model_max_length, capped at 512.
            use_gpu: run on CUDA (the FP16 variant; ONNX Runtime only).
            runtime: "onnxruntime" or "openvino"; default variant.json "runtime", else
                onnxruntime.
            precision: OpenVINO's inference precision ("bf16", else f32); default
                variant.json "precision".

        Raises:
            FileNotFoundError: model.onnx or labels.json is missing.
            ValueError: an unknown runtime, or the GPU asked of OpenVINO.
            RuntimeError: BF16 asked of OpenVINO on a CPU without BF16 compute.
        """
        self.model_dir = Path(model_dir)
        onnx_path = self.model_dir / MODEL_FILE
        labels_path = self.model_dir / LABELS_FILE
        for path in (onnx_path, labels_path):
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing from the model directory")
        self.labels: list[str] = [
            str(x) for x in json.loads(labels_path.read_text(encoding="utf-8"))["labels"]
        ]
        self.max_length = int(max_length or _max_length(self.model_dir))
        info = _variant_info(self.model_dir)
        self.runtime = str(runtime or info.get("runtime") or ONNXRUNTIME)
        self.precision = str(precision or info.get("precision") or "fp32")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime '{self.runtime}' (known: {', '.join(RUNTIMES)})")
        if self.runtime == OPENVINO:
            if use_gpu:
                raise ValueError("the GPU path runs on ONNX Runtime's CUDA provider, not OpenVINO")
            self._run = make_openvino(onnx_path, num_threads, self.precision)
            self._input_names = set(INPUT_NAMES)
        else:
            session = make_session(onnx_path, num_threads, use_gpu=use_gpu)
            self._input_names = {i.name for i in session.get_inputs()}
            self._run = lambda feeds: session.run([OUTPUT_NAME], feeds)[0]
        self._pad_id = 0
        self._tokenizer, self._fast = self._load_tokenizer()

    def _load_tokenizer(self) -> tuple[Any, bool]:
        tok_file = self.model_dir / "tokenizer.json"
        if tok_file.exists():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(tok_file))
            pad_id = tok.token_to_id("[PAD]")
            pad_token = "[PAD]"
            for name in ("tokenizer_config.json", "special_tokens_map.json"):
                special = self.model_dir / name
                if not special.exists():
                    continue
                pad = json.loads(special.read_text(encoding="utf-8")).get("pad_token")
                pad = pad.get("content") if isinstance(pad, dict) else pad
                if isinstance(pad, str) and tok.token_to_id(pad) is not None:
                    pad_token, pad_id = pad, tok.token_to_id(pad)
                    break
            self._pad_id = pad_id or 0
            tok.enable_padding(pad_id=self._pad_id, pad_token=pad_token)
            tok.enable_truncation(max_length=self.max_length)
            return tok, True
        # No tokenizer.json (slow-tokenizer files only): let transformers read them, safely.
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.model_dir), trust_remote_code=False), False

    def encode(self, texts: Sequence[str], *, pad_to_max: bool = False) -> dict[str, np.ndarray]:
        """Token ids and attention mask as int64 arrays [batch, seq].

        Args:
            texts: the texts, truncated to `max_length` tokens.
            pad_to_max: pad every row to `max_length` (the benchmark's fixed shapes) instead
                of to the longest row.

        Returns:
            The feeds the graph takes, by input name.
        """
        return self._graph_feeds(self._encode_all(texts, pad_to_max=pad_to_max))

    def _graph_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v for k, v in feeds.items() if k in self._input_names}

    def _encode_all(self, texts: Sequence[str], *, pad_to_max: bool) -> dict[str, np.ndarray]:
        # ids and mask both, whatever the graph takes: ordering by length reads the mask
        if self._fast:
            encodings = self._tokenizer.encode_batch(list(texts))
            ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
            width = self.max_length - ids.shape[1] if pad_to_max and ids.ndim == 2 else 0
            if width > 0:
                # padding state lives in the shared tokenizer (serving threads share it), so
                # fixed-length padding is added here rather than by reconfiguring it
                ids = np.pad(ids, ((0, 0), (0, width)), constant_values=self._pad_id)
                mask = np.pad(mask, ((0, 0), (0, width)), constant_values=0)
        else:
            enc = self._tokenizer(
                list(texts),
                padding="max_length" if pad_to_max else True,
                truncation=True,
                max_length=self.max_length,
            )
            ids = np.asarray(enc["input_ids"], dtype=np.int64)
            mask = np.asarray(enc["attention_mask"], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": mask}

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Logits for already-encoded inputs (what the timing functions measure).

        Args:
            feeds: the output of `encode`.

        Returns:
            Logits [batch, num_labels] as float32 (an FP16 graph keeps float32 outputs too).
        """
        out: np.ndarray = self._run(feeds)
        return out.astype(np.float32, copy=False)

    def logits(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Logits [len(texts), num_labels], float32.

        Args:
            texts: the texts.
            batch_size: texts per session run; None: the caller (e.g. the Bento's adaptive
                batcher) already chose the batch, which is tokenized once and run in
                `length_buckets` (short texts do not pay for the padding of long ones).

        Returns:
            The logits, in input order.
        """
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if batch_size:
            step = batch_size
            chunks = [
                self.run(self.encode(texts[i : i + step])) for i in range(0, len(texts), step)
            ]
            return np.concatenate(chunks, axis=0)
        feeds = self._encode_all(texts, pad_to_max=False)
        mask = feeds["attention_mask"]
        out: np.ndarray | None = None
        for rows in length_buckets(mask.sum(axis=1)):
            # The columns some row of the bucket attends to: its own longest padding, on
            # whichever side the tokenizer pads.
            cols = mask[rows].any(axis=0)
            part = self.run(self._graph_feeds({k: v[rows][:, cols] for k, v in feeds.items()}))
            if out is None:
                out = np.empty((len(texts), part.shape[1]), dtype=np.float32)
            out[rows] = part
        assert out is not None
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities [len(texts), num_labels], float64.

        Args:
            texts: the texts, run as one batch.

        Returns:
            Softmax of the logits.
        """
        probs: np.ndarray = softmax(self.logits(texts).astype(np.float64), axis=-1)
        return probs

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Label, label id and per-label probabilities for each text, in input order.

        Args:
            texts: the texts, run as one batch.

        Returns:
            One Prediction per text.
        """
        probs = self.predict_proba(texts)
        preds = []
        for row in probs:
            idx = int(np.argmax(row))
            preds.append(
                Prediction(
                    label=self.labels[idx],
                    label_id=idx,
                    probabilities={
                        name: float(p) for name, p in zip(self.labels, row, strict=True)
                    },
                )
            )
        return preds
