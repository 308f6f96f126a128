"""How each compressed variant is made, with the libraries that do it (torch prune, ORT quant).

PyTorch-side variants (pruned, student) return a new model; ONNX-side variants (INT8, FP16)
transform the optimized FP32 file.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.compress.noise import quiet
from tuneline.models import encode


def _encoder_linears(model: Any) -> list[tuple[Any, str]]:
    import torch

    encoder = model.base_model.encoder
    return [(m, "weight") for m in encoder.modules() if isinstance(m, torch.nn.Linear)]


def prune_unstructured(model: Any, sparsity: float) -> Any:
    """Global L1 magnitude pruning of every encoder Linear weight (a pruned copy).

    The masks stay attached (forward pre-hooks) so a brief fine-tune keeps pruned weights at
    zero; call `make_permanent` afterwards.
    """
    from torch.nn.utils import prune

    pruned = copy.deepcopy(model)
    prune.global_unstructured(
        _encoder_linears(pruned), pruning_method=prune.L1Unstructured, amount=sparsity
    )
    return pruned


def make_permanent(model: Any) -> Any:
    """prune.remove on every pruned parameter, so weights are plain tensors again."""
    from torch.nn.utils import prune

    for module, name in _encoder_linears(model):
        if prune.is_pruned(module) and hasattr(module, f"{name}_orig"):
            prune.remove(module, name)
    return model


def sparsity_of(model: Any) -> float:
    """Share of exactly-zero weights over the encoder Linear weights."""
    zeros = total = 0
    for module, name in _encoder_linears(model):
        weight = getattr(module, name)
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else 0.0


def prune_ffn_rows(model: Any, sparsity: float) -> Any:
    """Structured pruning of FFN neurons: drop the lowest-L2 rows of each intermediate layer.

    ln_structured picks the rows; the layers are then physically shrunk (intermediate Linear rows
    and the matching output Linear columns) so the exported graph does less work, which zeroed
    rows alone would not. Every layer keeps the same width, so config.intermediate_size stays
    valid and the pruned model saves and reloads as a normal BERT.
    """
    import torch
    from torch.nn.utils import prune

    pruned = copy.deepcopy(model)
    width = int(pruned.config.intermediate_size)
    keep = max(1, round(width * (1.0 - sparsity)))
    for layer in pruned.base_model.encoder.layer:
        inter, out = layer.intermediate.dense, layer.output.dense
        prune.ln_structured(inter, "weight", amount=width - keep, n=2, dim=0)
        rows = torch.nonzero(inter.weight_mask.sum(dim=1) > 0).flatten()
        prune.remove(inter, "weight")
        new_inter = torch.nn.Linear(inter.in_features, keep)
        new_out = torch.nn.Linear(keep, out.out_features)
        with torch.no_grad():
            new_inter.weight.copy_(inter.weight[rows])
            new_inter.bias.copy_(inter.bias[rows])
            new_out.weight.copy_(out.weight[:, rows])
            new_out.bias.copy_(out.bias)
        layer.intermediate.dense, layer.output.dense = new_inter, new_out
    pruned.config.intermediate_size = keep
    return pruned


def build_student(teacher: Any, num_layers: int) -> Any:
    """A shallower copy of `teacher` initialised from evenly spaced teacher layers.

    Embeddings, pooler and classifier are copied; student layer i takes teacher layer
    round(i * (L-1) / (k-1)) so the first and last layers are kept (DistilBERT-style init).
    """
    import torch

    total = int(teacher.config.num_hidden_layers)
    k = max(1, min(num_layers, total))
    picks = [0] if k == 1 else [round(i * (total - 1) / (k - 1)) for i in range(k)]
    student = copy.deepcopy(teacher)
    student.base_model.encoder.layer = torch.nn.ModuleList(
        [copy.deepcopy(teacher.base_model.encoder.layer[i]) for i in picks]
    )
    student.config.num_hidden_layers = k
    for idx, layer in enumerate(student.base_model.encoder.layer):
        if hasattr(layer, "attention") and hasattr(layer.attention, "self"):
            layer.attention.self.layer_idx = idx  # keep cache/layer indices consistent
    return student


def quantize_dynamic_int8(fp32_onnx: Path, out: Path) -> None:
    """INT8 dynamic quantization of the MatMul/Gemm weights (activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(
            fp32_onnx,
            out,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=False,
            weight_type=QuantType.QInt8,
        )


class TextCalibrationReader:
    """Feeds tokenized training rows to ORT's calibrator, a small batch at a time."""

    def __init__(self, tokenizer: Any, texts: Sequence[str], max_length: int, batch: int = 8):
        self._batches = [
            encode(tokenizer, texts[i : i + batch], max_length) for i in range(0, len(texts), batch)
        ]
        self._it: Iterator[dict[str, np.ndarray]] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._batches)


def quantize_static_int8(
    fp32_onnx: Path, out: Path, tokenizer: Any, calib_texts: Sequence[str], max_length: int
) -> None:
    """INT8 static QDQ quantization, calibrated (MinMax) on a sample of the training split.

    Only MatMul/Gemm are quantized: the fused LayerNorm/Gelu kernels stay FP32, which keeps
    the accuracy of the residual stream.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(TextCalibrationReader, CalibrationDataReader):
        pass

    with quiet():
        quantize_static(
            fp32_onnx,
            out,
            Reader(tokenizer, calib_texts, max_length),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True},
        )


def convert_fp16(fp32_onnx: Path, out: Path) -> None:
    """FP16 weights and compute for the GPU path; inputs/outputs keep their types."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(fp32_onnx)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(out), use_external_data_format=False)
