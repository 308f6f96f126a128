"""The export step: a fine-tuned model directory -> an FP32 ONNX variant with enforced parity.

The primitives (exporter choice, ORT fusion, parity) live in tuneline/onnx_export.py so the
compress step shares them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prefect import task

from tuneline.config import Params
from tuneline.onnx_export import (
    architecture,
    check_parity,
    export_fp32,
    export_raw,
    measure_parity,
    optimize,
    parity_stats,
    torch_logits,
    write_variant_dir,
)
from tuneline.onnx_runtime import LABELS_FILE

__all__ = [
    "ExportResult",
    "architecture",
    "check_parity",
    "export_classifier",
    "export_fp32",
    "export_onnx",
    "export_raw",
    "measure_parity",
    "optimize",
    "parity_stats",
    "torch_logits",
    "write_variant_dir",
]


@dataclass(frozen=True)
class ExportResult:
    """Where the FP32 variant went and how closely it matches PyTorch."""

    onnx_dir: str
    parity: dict[str, float]


def export_classifier(
    model_dir: Path, output_dir: Path, params: Params, texts: Sequence[str]
) -> ExportResult:
    """Export a fine-tuned model directory to an FP32 ONNX variant and enforce parity.

    Args:
        model_dir: HF classifier directory (config.json, model.safetensors, tokenizer, labels.json).
        output_dir: the variant directory to write (replaced atomically).
        params: settings; uses compress.opset, parity thresholds, num_threads, train.max_seq_len.
        texts: rows to check parity on (the test split).

    Returns:
        ExportResult(onnx_dir, parity).

    Raises:
        ParityError: ONNX and PyTorch disagree beyond compress.parity_* thresholds.
    """
    from tuneline.models import load_classifier

    model, tokenizer = load_classifier(model_dir)
    labels = json.loads((Path(model_dir) / LABELS_FILE).read_text("utf-8"))["labels"]
    cp, max_len = params.compress, params.train.max_seq_len
    export_fp32(
        model,
        tokenizer,
        labels,
        output_dir,
        opset=cp.opset,
        max_seq_len=max_len,
        work_dir=output_dir.parent / f".{output_dir.name}.work",
        meta={"name": output_dir.name, "method": "fp32"},
    )
    shutil.rmtree(output_dir.parent / f".{output_dir.name}.work", ignore_errors=True)
    stats = measure_parity(
        output_dir, torch_logits(model, tokenizer, texts, max_len), texts, cp.num_threads
    )
    check_parity(
        output_dir.name,
        stats,
        max_abs_logit=cp.parity_max_abs_logit,
        min_agreement=cp.parity_min_agreement,
    )
    return ExportResult(onnx_dir=str(output_dir), parity=stats)


export_onnx = task(name="export-onnx", retries=0)(export_classifier)
