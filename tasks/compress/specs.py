"""The search space of compression as two tables: structures x (precision, runtime) pairs.

A candidate stacks one row of each: a structure (the fine-tuned parent as it is, a distilled
student of fewer layers, the parent with FFN rows pruned) is exported once to a fused FP32 ONNX
file; a precision transform of that file (none, INT8 dynamic, INT8 static QDQ, FP16) is then
run by one runtime (ONNX Runtime, or OpenVINO reading the same file, in BF16 where the CPU
has it). Which pairs this machine can run, and which the params enable, decides the
candidates; tasks/compress/build.py builds them, parent first.

Parity: every candidate is compared with its own structure's PyTorch model, measured through
the runtime that will serve it. FP32 pairs are held to the FP32 thresholds, reduced-precision
pairs (BF16, INT8, FP16) to the looser quant_* thresholds, because they legitimately move logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.runtimes import ONNXRUNTIME, OPENVINO
from tasks.compress import variants as V
from tasks.compress.distill import distill, finetune_steps
from tuneline.config import CompressParams, Params
from tuneline.console import Progress
from tuneline.truncation import Cut, cut_of

PARENT = "parent"
Settings = dict[str, Any]  # logged as the candidate's MLflow params and in variant.json


@dataclass(frozen=True)
class BuildContext:
    """What every builder reads, and where candidates are written and checked.

    Attributes:
        model_dir: the fine-tuned model directory (the parent's PyTorch source).
        teacher: the fine-tuned PyTorch classifier (never modified; builders copy it).
        tokenizer: its tokenizer.
        params: all settings (compress, train.max_seq_len, serve.max_batch_size, base.seed).
        labels: class names.
        train: the training split (texts, class ids): calibration, KD and recovery rows.
        val: the validation split: distillation stops on it.
        test: the test split: parity, accuracy and speed.
        output_dir: one directory per candidate is written under it.
        work: scratch files, removed after the build.
        teacher_logits: the teacher's logits per KD batch, shared by the depth search's students.
    """

    model_dir: Path
    teacher: Any
    tokenizer: Any
    params: Params
    labels: list[str]
    train: tuple[list[str], list[int]]
    val: tuple[list[str], list[int]]
    test: tuple[list[str], list[int]]
    output_dir: Path
    work: Path
    # candidates built so far, on the console (tuneline/console.py): the search's progress
    progress: Progress = field(default_factory=lambda: Progress("compress", 0, "candidates"))
    teacher_logits: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    @property
    def cut(self) -> Cut:
        """How a text over train.max_seq_len tokens is cut (tuneline/truncation.py)."""
        return cut_of(self.params.train)

    @property
    def max_len(self) -> int:
        """train.max_seq_len ('auto' already resolved to the length the model trained at)."""
        return self.params.train.max_seq_len


@dataclass(frozen=True)
class Structure:
    """One row of the structure table.

    Attributes:
        name: as in compress.structures.
        method: how it is made (the `tuneline.method` tag).
        build: returns the new PyTorch model and its settings; None: the parent itself.
    """

    name: str
    method: str
    build: Callable[[BuildContext], tuple[Any, Settings]] | None


@dataclass(frozen=True)
class Pair:
    """One (precision, runtime) row: how a structure's FP32 file is transformed and run.

    Attributes:
        precision: as in compress.precisions.
        runtime: as in compress.runtimes.
        transform: writes the transformed file (3rd argument) from the FP32 file (2nd) and
            returns its settings; None: the FP32 file as it is.
        reduced: judged under the quant_* parity thresholds.
        needs: "bf16" (OpenVINO computes in BF16 here), "cuda" (ORT has its CUDA provider).
    """

    precision: str
    runtime: str
    transform: Callable[[BuildContext, Path, Path], Settings] | None
    reduced: bool
    needs: str | None = None

    @property
    def key(self) -> str:
        """The pair's name part: "bf16_ov", "int8_dynamic_ort"."""
        return f"{self.precision}_{'ov' if self.runtime == OPENVINO else 'ort'}"

    @property
    def use_gpu(self) -> bool:
        return self.needs == "cuda"

    def transform_key(self) -> str:
        """Pairs with the same key share one transformed file per structure."""
        return "fp32" if self.transform is None else self.precision


def candidate_name(structure: str, pair: Pair) -> str:
    """The candidate's name: its directory, MLflow run and selection key."""
    return f"{structure}_{pair.key}"


def parity_thresholds(cp: CompressParams, reduced: bool) -> dict[str, float]:
    """The parity thresholds a candidate is held to.

    Args:
        cp: the compress settings.
        reduced: BF16/INT8/FP16 (quant_* thresholds) rather than FP32.

    Returns:
        {"max_abs_logit", "min_agreement"}, keyword arguments of export.check_parity.
    """
    if reduced:
        return {
            "max_abs_logit": cp.quant_parity_max_abs_logit,
            "min_agreement": cp.quant_parity_min_agreement,
        }
    return {"max_abs_logit": cp.parity_max_abs_logit, "min_agreement": cp.parity_min_agreement}


def _int8_dynamic(ctx: BuildContext, fp32: Path, out: Path) -> Settings:
    V.quantize_dynamic_int8(fp32, out)
    return {"weight_type": "QInt8"}


def _int8_static(ctx: BuildContext, fp32: Path, out: Path) -> Settings:
    cp = ctx.params.compress
    texts = ctx.train[0]
    # a seeded sample, in file order, so reruns calibrate on the same rows
    pick = np.random.default_rng(ctx.params.base.seed).permutation(len(texts))
    calib = [texts[i] for i in sorted(pick[: cp.calibration_rows])]
    V.quantize_static_int8(fp32, out, ctx.tokenizer, calib, ctx.params.train.max_seq_len)
    return {"calibration_rows": len(calib), "calibrate_method": "MinMax", "format": "QDQ"}


def _fp16(ctx: BuildContext, fp32: Path, out: Path) -> Settings:
    V.convert_fp16(fp32, out)
    return {"keep_io_types": True}


def _prune_settings(cp: CompressParams) -> Settings:
    return {"sparsity": cp.sparsity, "prune_finetune_steps": cp.prune_finetune_steps}


def _recovered(ctx: BuildContext, pruned: Any) -> Any:
    """A brief fine-tune with the masks attached (pruned weights stay zero), then masks removed."""
    cp = ctx.params.compress
    if cp.prune_finetune_steps > 0:
        finetune_steps(pruned, ctx.tokenizer, *ctx.train, ctx.params, cp.prune_finetune_steps)
    return V.make_permanent(pruned)


def _sparse(ctx: BuildContext) -> tuple[Any, Settings]:
    cp = ctx.params.compress
    model = _recovered(ctx, V.prune_unstructured(ctx.teacher, cp.sparsity))
    return model, {**_prune_settings(cp), "achieved_sparsity": round(V.sparsity_of(model), 4)}


def _pruned(ctx: BuildContext) -> tuple[Any, Settings]:
    cp = ctx.params.compress
    return _recovered(ctx, V.prune_ffn_rows(ctx.teacher, cp.sparsity)), _prune_settings(cp)


def _kd(ctx: BuildContext, layers: int) -> tuple[Any, dict[str, Any]]:
    student = V.build_student(ctx.teacher, layers)
    return distill(
        ctx.teacher, student, ctx.tokenizer, ctx.train, ctx.val, ctx.params, ctx.teacher_logits
    )


def _distilled(ctx: BuildContext) -> tuple[Any, Settings]:
    """The shallowest student that reaches the val target, from distill_layers down to
    distill_min_layers: a layer fewer is tried only while the last student reached it, so at
    most one distillation misses (a shallower student is faster at every precision)."""
    cp = ctx.params.compress
    layers = cp.distill_layers
    student, report = _kd(ctx, layers)
    tried = [f"{layers}:{report['val_accuracy']:.4f}"]
    while report["stopped"] == "target" and layers > cp.distill_min_layers:
        smaller, small = _kd(ctx, layers - 1)
        tried.append(f"{layers - 1}:{small['val_accuracy']:.4f}")
        if small["stopped"] != "target":
            break
        student, report, layers = smaller, small, layers - 1
    settings = {
        "distill_layers": layers,
        "distill_tried": " ".join(tried),  # depth:val accuracy of each student distilled
        "temperature": cp.distill_temperature,
        "alpha": cp.distill_alpha,
        "max_steps": cp.distill_max_steps,
        **{f"kd_{k}": v for k, v in report.items()},
    }
    return student, settings


STRUCTURES: tuple[Structure, ...] = (
    Structure(PARENT, "finetuned", None),
    Structure("distilled", "kd_student", _distilled),
    Structure("pruned", "ffn_rows_l2", _pruned),
    Structure("sparse", "magnitude_l1_global", _sparse),
)

PAIRS: tuple[Pair, ...] = (
    Pair("fp32", ONNXRUNTIME, None, False),
    Pair("fp32", OPENVINO, None, False),
    Pair("bf16", OPENVINO, None, True, needs="bf16"),
    Pair("int8_dynamic", ONNXRUNTIME, _int8_dynamic, True),
    Pair("int8_static", ONNXRUNTIME, _int8_static, True),
    Pair("int8_static", OPENVINO, _int8_static, True),
    Pair("fp16", ONNXRUNTIME, _fp16, True, needs="cuda"),
)


def enabled_structures(cp: CompressParams) -> list[Structure]:
    """The structures compress.structures names, the parent first (the others rank on it).

    Args:
        cp: the compress settings.

    Returns:
        Structure rows, parent first, then in table order.
    """
    wanted = {PARENT, *cp.structures}
    return [row for row in STRUCTURES if row.name in wanted]


def enabled_pairs(cp: CompressParams, have: set[str]) -> tuple[list[Pair], dict[str, str]]:
    """The (precision, runtime) pairs the params enable and this machine can run.

    Args:
        cp: the compress settings (precisions, runtimes).
        have: what this machine offers: "bf16", "cuda", and the runtimes that import.

    Returns:
        (pairs to build, {pair key: why it is skipped}) for pairs the params enable.
    """
    pairs, skipped = [], {}
    for pair in PAIRS:
        if pair.precision not in cp.precisions or pair.runtime not in cp.runtimes:
            continue
        if pair.runtime not in have:
            skipped[pair.key] = f"skipped: {pair.runtime} is not installed"
        elif pair.needs == "bf16" and "bf16" not in have:
            skipped[pair.key] = "skipped: this CPU has no BF16 compute (AVX-512 BF16 / AMX)"
        elif pair.needs == "cuda" and "cuda" not in have:
            skipped[pair.key] = "skipped: CUDAExecutionProvider is not available (GPU only)"
        else:
            pairs.append(pair)
    return pairs, skipped
