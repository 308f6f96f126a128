"""Minimal ONNX Runtime classifier over an ONNX variant directory.

The one prediction path shared by the served Bento, the promotion gate and the Bento smoke
test, so "the Bento answers like the registry artifact" compares like with like. It depends on
onnxruntime, tokenizers and numpy only (no tuneline import) so it can be bundled into a Bento.

Variant directory: model.onnx, tokenizer.json (or files AutoTokenizer reads), labels.json
({"labels": [...]}, index = class id), and optionally variant.json (may carry "max_seq_len").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# BERT-style position embeddings stop at 512; a larger `model_max_length` is a placeholder.
_MAX_POSITIONS = 512


@dataclass(frozen=True)
class Prediction:
    """One text's answer."""

    label: str
    label_id: int
    probabilities: dict[str, float]


def _max_length(model_dir: Path) -> int:
    variant = model_dir / "variant.json"
    if variant.exists():
        value = json.loads(variant.read_text(encoding="utf-8")).get("max_seq_len")
        if isinstance(value, int) and value > 0:
            return min(value, _MAX_POSITIONS)
    config = model_dir / "tokenizer_config.json"
    if config.exists():
        value = json.loads(config.read_text(encoding="utf-8")).get("model_max_length")
        if isinstance(value, int | float) and 0 < value <= _MAX_POSITIONS:
            return int(value)
    return _MAX_POSITIONS


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return out


class OnnxTextClassifier:
    """Tokenize with the variant's tokenizer, run model.onnx, return labels and probabilities."""

    def __init__(self, model_dir: Path | str, num_threads: int = 1) -> None:
        """Load the session and tokenizer.

        Args:
            model_dir: an ONNX variant directory (see the module docstring).
            num_threads: ORT intra-op threads; serving and the gate run on shared CPUs.

        Raises:
            FileNotFoundError: model.onnx or labels.json is missing.
        """
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        onnx_path = self.model_dir / "model.onnx"
        labels_path = self.model_dir / "labels.json"
        for path in (onnx_path, labels_path):
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing from the model directory")
        self.labels: list[str] = [
            str(x) for x in json.loads(labels_path.read_text(encoding="utf-8"))["labels"]
        ]
        self.max_length = _max_length(self.model_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, num_threads)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self.session.get_inputs()}
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
            tok.enable_padding(pad_id=pad_id or 0, pad_token=pad_token)
            tok.enable_truncation(max_length=self.max_length)
            return tok, True
        # No tokenizer.json (slow-tokenizer files only): let transformers read them, safely.
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.model_dir), trust_remote_code=False), False

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token ids and attention mask as int64 arrays [batch, seq]."""
        if self._fast:
            encodings = self._tokenizer.encode_batch(list(texts))
            ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        else:
            enc = self._tokenizer(
                list(texts), padding=True, truncation=True, max_length=self.max_length
            )
            ids = np.asarray(enc["input_ids"], dtype=np.int64)
            mask = np.asarray(enc["attention_mask"], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        return {k: v for k, v in feeds.items() if k in self._input_names}

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        out: np.ndarray = self.session.run(["logits"], self.encode(texts))[0]
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return softmax(self.logits(texts).astype(np.float64))

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Label, label id and per-label probabilities for each text, in input order."""
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
