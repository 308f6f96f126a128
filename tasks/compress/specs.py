"""The compressed variants as one table: what turns each on, how it is made, how its parity is
judged. tasks/compress/build.py runs the enabled rows in table order.

Two kinds of row. `from_fp32` variants transform the optimized FP32 ONNX file (INT8, FP16) and
are compared with the FP32 PyTorch model under the looser quant_* thresholds, because
quantization legitimately moves logits. `from_torch` variants are new PyTorch models (pruned,
distilled): exported on their own and compared with themselves under the FP32 thresholds.
The FP32 baseline (compress.fp32) is not a row: every other variant is measured against it,
so it is always built first (tasks/compress/build.py build_baseline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.predictor import MODEL_FILE
from tasks.compress import variants as V
from tasks.compress.distill import distill, finetune_steps
from tuneline.config import CompressParams, Params

BASELINE = "fp32"
BASELINE_METHOD = "onnx_fp32_optimized"
BASELINE_FLAG = "fp32"  # compress.fp32 must be true

Settings = dict[str, Any]  # logged as the variant's MLflow params and in variant.json


@dataclass(frozen=True)
class BuildContext:
    """What every variant's builder reads, and where variants are written and checked.

    Attributes:
        model_dir: the fine-tuned model directory (recorded as each variant's source).
        teacher: the fine-tuned PyTorch classifier (never modified; builders copy it).
        tokenizer: its tokenizer.
        params: all settings (compress, train.max_seq_len, base.seed).
        labels: class names.
        train: the training split (texts, class ids): calibration, KD and recovery rows.
        test_texts: the parity rows.
        teacher_ref: the teacher's PyTorch logits of test_texts.
        output_dir: one directory per variant is written under it.
        work: scratch files, removed after the build.
    """

    model_dir: Path
    teacher: Any
    tokenizer: Any
    params: Params
    labels: list[str]
    train: tuple[list[str], list[int]]
    test_texts: list[str]
    teacher_ref: np.ndarray
    output_dir: Path
    work: Path

    @property
    def fp32_file(self) -> Path:
        """The optimized FP32 ONNX file (written before any other variant is built)."""
        return self.output_dir / BASELINE / MODEL_FILE


@dataclass(frozen=True)
class VariantSpec:
    """One row of the table; exactly one of `from_fp32` and `from_torch` is set.

    Attributes:
        name: the variant's name (its directory, MLflow run and selection key).
        method: how it is made, logged as the `tuneline.method` tag.
        enabled_by: the boolean field of compress: in params.yaml that turns it on.
        quant: parity under the quant_* thresholds (against the FP32 PyTorch model) rather
            than the FP32 ones (against its own PyTorch source).
        from_fp32: writes this variant's ONNX file (2nd argument) from ctx.fp32_file and
            returns its settings.
        from_torch: returns a new PyTorch model and its settings.
        needs_cuda: skipped, with a reason, where ONNX Runtime has no CUDA provider; run on
            the GPU otherwise.
    """

    name: str
    method: str
    enabled_by: str
    quant: bool
    from_fp32: Callable[[BuildContext, Path], Settings] | None = None
    from_torch: Callable[[BuildContext], tuple[Any, Settings]] | None = None
    needs_cuda: bool = False

    def __post_init__(self) -> None:
        if (self.from_fp32 is None) == (self.from_torch is None):
            raise ValueError(f"variant spec '{self.name}': set exactly one of from_fp32/from_torch")


def parity_thresholds(cp: CompressParams, quant: bool) -> dict[str, float]:
    """The parity thresholds a variant is held to.

    Args:
        cp: the compress settings.
        quant: the variant is a quantized transform of the FP32 file.

    Returns:
        {"max_abs_logit", "min_agreement"}, keyword arguments of export.check_parity.
    """
    if quant:
        return {
            "max_abs_logit": cp.quant_parity_max_abs_logit,
            "min_agreement": cp.quant_parity_min_agreement,
        }
    return {"max_abs_logit": cp.parity_max_abs_logit, "min_agreement": cp.parity_min_agreement}


def _int8_dynamic(ctx: BuildContext, out: Path) -> Settings:
    V.quantize_dynamic_int8(ctx.fp32_file, out)
    return {"weight_type": "QInt8"}


def _int8_static(ctx: BuildContext, out: Path) -> Settings:
    cp = ctx.params.compress
    texts = ctx.train[0]
    # a seeded sample, in file order, so reruns calibrate on the same rows
    pick = np.random.default_rng(ctx.params.base.seed).permutation(len(texts))
    calib = [texts[i] for i in sorted(pick[: cp.calibration_rows])]
    V.quantize_static_int8(ctx.fp32_file, out, ctx.tokenizer, calib, ctx.params.train.max_seq_len)
    return {"calibration_rows": len(calib), "calibrate_method": "MinMax", "format": "QDQ"}


def _fp16(ctx: BuildContext, out: Path) -> Settings:
    V.convert_fp16(ctx.fp32_file, out)
    return {"keep_io_types": True}


def _prune_settings(cp: CompressParams) -> Settings:
    return {"sparsity": cp.sparsity, "prune_finetune_steps": cp.prune_finetune_steps}


def _recovered(ctx: BuildContext, pruned: Any) -> Any:
    """A brief fine-tune with the masks attached (pruned weights stay zero), then masks removed."""
    cp = ctx.params.compress
    if cp.prune_finetune_steps > 0:
        finetune_steps(pruned, ctx.tokenizer, *ctx.train, ctx.params, cp.prune_finetune_steps)
    return V.make_permanent(pruned)


def _prune_unstructured(ctx: BuildContext) -> tuple[Any, Settings]:
    cp = ctx.params.compress
    model = _recovered(ctx, V.prune_unstructured(ctx.teacher, cp.sparsity))
    return model, {**_prune_settings(cp), "achieved_sparsity": round(V.sparsity_of(model), 4)}


def _prune_structured(ctx: BuildContext) -> tuple[Any, Settings]:
    cp = ctx.params.compress
    return _recovered(ctx, V.prune_ffn_rows(ctx.teacher, cp.sparsity)), _prune_settings(cp)


def _distilled(ctx: BuildContext) -> tuple[Any, Settings]:
    cp = ctx.params.compress
    settings = {
        "distill_layers": cp.distill_layers,
        "temperature": cp.distill_temperature,
        "alpha": cp.distill_alpha,
        "epochs": cp.distill_epochs,
        "max_steps": cp.distill_max_steps,
    }
    student = V.build_student(ctx.teacher, cp.distill_layers)
    return distill(ctx.teacher, student, ctx.tokenizer, *ctx.train, ctx.params), settings


VARIANTS: tuple[VariantSpec, ...] = (
    VariantSpec("int8_dynamic", "ort_quantize_dynamic", "dynamic_int8", True, _int8_dynamic),
    VariantSpec("int8_static", "ort_quantize_static_qdq", "static_int8", True, _int8_static),
    VariantSpec(
        "prune_unstructured",
        "magnitude_l1_global",
        "prune_unstructured",
        False,
        from_torch=_prune_unstructured,
    ),
    VariantSpec(
        "prune_structured", "ffn_rows_l2", "prune_structured", False, from_torch=_prune_structured
    ),
    VariantSpec("distilled", "kd_student", "distill", False, from_torch=_distilled),
    VariantSpec("fp16", "ort_float16", "fp16", True, _fp16, needs_cuda=True),
)


def enabled_variants(cp: CompressParams) -> list[VariantSpec]:
    """The rows whose compress.<enabled_by> flag is true, in table order.

    Args:
        cp: the compress settings.

    Returns:
        The specs to build after the baseline.
    """
    return [spec for spec in VARIANTS if getattr(cp, spec.enabled_by)]
