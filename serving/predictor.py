"""The one model wrapper: an ONNX variant directory in, logits, labels and probabilities out.

The served Bento, the promotion gate, the Bento smoke test, compression (parity and scoring),
registration and the benchmarks all load a variant through `OnnxTextClassifier`, so what is
measured and checked is what is served. It depends on onnxruntime or openvino, tokenizers,
numpy and scipy only (no tuneline import) so it can be bundled into a Bento; serving/timing.py
times it.

Two runtimes read the same model.onnx (serving/runtimes.py): ONNX Runtime (CPU, or CUDA with
`use_gpu`) and OpenVINO (CPU, in BF16 where the CPU has it). Which one serves a variant is
recorded in its variant.json ("runtime", "precision").

Variant directory: model.onnx, tokenizer.json (or files AutoTokenizer reads), labels.json
({"labels": [...]}, index = class id), and optionally variant.json (may carry "max_seq_len",
"runtime": "onnxruntime" | "openvino", "precision", e.g. "fp32", "bf16", "int8_static", and
"temperature", the calibration that predict_proba applies).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

from serving.runtimes import (
    ONNXRUNTIME,
    OPENVINO,
    OUTPUT_NAME,
    RUNTIMES,
    make_openvino,
    make_session,
)
from serving.tokens import (
    encode_head_tail,
    head_tail_share,
    length_buckets,
    load_tokenizer,
    max_length_of,
)

MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.json"
VARIANT_FILE = "variant.json"
INPUT_NAMES = ("input_ids", "attention_mask")  # what every exported graph takes


@dataclass(frozen=True)
class Prediction:
    """One text's answer."""

    label: str
    label_id: int
    probabilities: dict[str, float]


def _variant_info(model_dir: Path) -> dict[str, Any]:
    variant = model_dir / VARIANT_FILE
    if not variant.exists():
        return {}
    info = json.loads(variant.read_text(encoding="utf-8"))
    return info if isinstance(info, dict) else {}


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
        self.max_length = int(
            max_length or max_length_of(self.model_dir, _variant_info(self.model_dir))
        )
        info = _variant_info(self.model_dir)
        self.runtime = str(runtime or info.get("runtime") or ONNXRUNTIME)
        self.precision = str(precision or info.get("precision") or "fp32")
        # fitted on the validation split (tasks/behaviour): divides the logits before the
        # softmax, so probabilities are calibrated and labels unchanged; 1.0 when never fitted
        self.temperature = float(info.get("temperature") or 1.0)
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
        # "truncation": "head_tail" keeps a long text's start and end (tuneline/truncation.py)
        self.head_share = head_tail_share(info)
        self._tokenizer, self._fast, self._pad_id = load_tokenizer(
            self.model_dir, self.max_length, truncate=self.head_share is None
        )

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
        if self._fast and self.head_share is not None:
            ids, mask = encode_head_tail(
                self._tokenizer, texts, self.max_length, self.head_share, self._pad_id
            )
            width = self.max_length - ids.shape[1] if pad_to_max else 0
            if width > 0:
                ids = np.pad(ids, ((0, 0), (0, width)), constant_values=self._pad_id)
                mask = np.pad(mask, ((0, 0), (0, width)), constant_values=0)
        elif self._fast:
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
            Softmax of the logits divided by the variant's temperature.
        """
        logits = self.logits(texts).astype(np.float64) / self.temperature
        probs: np.ndarray = softmax(logits, axis=-1)
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
