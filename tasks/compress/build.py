"""Making every enabled variant directory and measuring its parity (the build stage of
tasks/compress/task.py).

FP32 is exported from the fine-tuned model first; then each enabled row of the variant table
(tasks/compress/specs.py) is built in table order: INT8/FP16 transform the FP32 file and are
compared with the FP32 PyTorch logits under the quant_* thresholds; pruned and distilled
variants are exported from their own PyTorch model and compared with it under the FP32
thresholds. A breach is recorded on the variant, not raised here, so every variant is still
scored and logged before the task fails.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from serving.predictor import VARIANT_FILE, cuda_available
from tasks.compress.export import check_parity, export_fp32, measure_parity, write_variant_dir
from tasks.compress.specs import (
    BASELINE,
    BASELINE_METHOD,
    BuildContext,
    Settings,
    VariantSpec,
    enabled_variants,
    parity_thresholds,
)
from tuneline.config import Params
from tuneline.errors import ParityError
from tuneline.io import write_json
from tuneline.models import load_classifier, torch_logits


@dataclass(frozen=True)
class BuiltVariant:
    """One exported variant directory with its parity and, if it breached, why."""

    name: str
    method: str
    dir: Path
    settings: Settings
    parity: dict[str, float]
    use_gpu: bool = False
    breach: str | None = None  # the ParityError message


def _checked(
    ctx: BuildContext,
    name: str,
    method: str,
    settings: Settings,
    parity: dict[str, float],
    *,
    quant: bool,
    gpu: bool = False,
) -> BuiltVariant:
    breach = None
    try:
        check_parity(name, parity, **parity_thresholds(ctx.params.compress, quant))
    except ParityError as exc:
        breach = str(exc)
    return BuiltVariant(name, method, ctx.output_dir / name, settings, parity, gpu, breach)


def _meta(ctx: BuildContext, name: str, method: str, settings: Settings) -> dict[str, Any]:
    return {"name": name, "method": method, "settings": settings, "source": str(ctx.model_dir)}


def load_split(prepared_dir: Path, name: str) -> tuple[list[str], list[int]]:
    """Texts and class ids of one prepared split.

    Args:
        prepared_dir: data/prepared.
        name: train, val or test.

    Returns:
        (texts, labels) in file order.
    """
    df = pd.read_parquet(prepared_dir / f"{name}.parquet")
    return df["text"].astype(str).tolist(), [int(v) for v in df["label"]]


def build_variants(
    model_dir: Path,
    prepared_dir: Path,
    params: Params,
    output_dir: Path,
    labels: list[str],
    test_texts: list[str],
) -> tuple[list[BuiltVariant], dict[str, str]]:
    """Export the FP32 baseline and every enabled variant, each with its parity measured.

    PyTorch runs on compress.num_threads threads meanwhile (trained and timed like ORT); the
    previous count is restored and the scratch directory removed afterwards.

    Args:
        model_dir: fine-tuned HF classifier directory.
        prepared_dir: data/prepared (the training split feeds calibration, KD and recovery).
        params: settings.
        output_dir: one variant directory per variant is written under it.
        labels: class names.
        test_texts: the parity rows.

    Returns:
        (built variants, baseline first; {skipped name: reason}).
    """
    import torch

    work = output_dir / ".work"
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, params.compress.num_threads))
    try:
        teacher, tokenizer = load_classifier(model_dir)
        ctx = BuildContext(
            model_dir=model_dir,
            teacher=teacher,
            tokenizer=tokenizer,
            params=params,
            labels=labels,
            train=load_split(prepared_dir, "train"),
            test_texts=test_texts,
            teacher_ref=torch_logits(teacher, tokenizer, test_texts, params.train.max_seq_len),
            output_dir=output_dir,
            work=work,
        )
        built = [build_baseline(ctx)]
        skipped: dict[str, str] = {}
        for spec in enabled_variants(params.compress):
            if spec.needs_cuda and not cuda_available():
                skipped[spec.name] = (
                    "skipped: CUDAExecutionProvider is not available "
                    f"({spec.name.upper()} is GPU-only)"
                )
                continue
            built.append(build_variant(spec, ctx))
        return built, skipped
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(work, ignore_errors=True)


def build_baseline(ctx: BuildContext) -> BuiltVariant:
    """Export + optimize the fine-tuned model itself; parity against its PyTorch logits.

    Args:
        ctx: the build context.

    Returns:
        The FP32 variant (its settings: the opset and the fused-operator counts).
    """
    cp = ctx.params.compress
    # variant.json keeps empty settings; the MLflow params get the opset and the fusions
    fusions = _export(ctx, ctx.teacher, BASELINE, BASELINE_METHOD, {})
    settings = {"opset": cp.opset, "fusions": json.dumps(fusions)}
    parity = measure_parity(
        ctx.output_dir / BASELINE, ctx.teacher_ref, ctx.test_texts, cp.num_threads
    )
    return _checked(ctx, BASELINE, BASELINE_METHOD, settings, parity, quant=False)


def build_variant(spec: VariantSpec, ctx: BuildContext) -> BuiltVariant:
    """Build one table row into its variant directory and measure its parity.

    Args:
        spec: the row.
        ctx: the build context (the baseline is already written).

    Returns:
        The built variant, with `breach` set when it fails its parity thresholds.
    """
    if spec.from_fp32 is not None:
        return _from_fp32(spec, spec.from_fp32, ctx)
    assert spec.from_torch is not None  # VariantSpec checks that one of the two is set
    return _from_torch(spec, spec.from_torch, ctx)


def _from_fp32(
    spec: VariantSpec, make: Callable[[BuildContext, Path], Settings], ctx: BuildContext
) -> BuiltVariant:
    out_file = ctx.work / f"{spec.name}.onnx"
    settings = make(ctx, out_file)
    # opset, max_seq_len, architecture and fusions are the FP32 graph's: keep them
    fp32_info = json.loads((ctx.output_dir / BASELINE / VARIANT_FILE).read_text("utf-8"))
    info = {**fp32_info, **_meta(ctx, spec.name, spec.method, settings)}
    target = ctx.output_dir / spec.name
    write_variant_dir(target, out_file, ctx.tokenizer, ctx.labels, info)
    gpu = spec.needs_cuda
    parity = measure_parity(
        target, ctx.teacher_ref, ctx.test_texts, ctx.params.compress.num_threads, use_gpu=gpu
    )
    return _checked(ctx, spec.name, spec.method, settings, parity, quant=spec.quant, gpu=gpu)


def _from_torch(
    spec: VariantSpec, make: Callable[[BuildContext], tuple[Any, Settings]], ctx: BuildContext
) -> BuiltVariant:
    model, settings = make(ctx)
    _save_source(model, ctx.tokenizer, ctx.labels, ctx.output_dir / "sources" / spec.name)
    _export(ctx, model, spec.name, spec.method, settings)
    # its own PyTorch model is the reference: compression changed what it computes
    ref = torch_logits(model, ctx.tokenizer, ctx.test_texts, ctx.params.train.max_seq_len)
    parity = measure_parity(
        ctx.output_dir / spec.name, ref, ctx.test_texts, ctx.params.compress.num_threads
    )
    return _checked(ctx, spec.name, spec.method, settings, parity, quant=spec.quant)


def _export(
    ctx: BuildContext, model: Any, name: str, method: str, settings: Settings
) -> dict[str, int]:
    """Export + check + optimize a PyTorch model into its variant directory; its fusions."""
    return export_fp32(
        model,
        ctx.tokenizer,
        ctx.labels,
        ctx.output_dir / name,
        opset=ctx.params.compress.opset,
        max_seq_len=ctx.params.train.max_seq_len,
        work_dir=ctx.work,
        meta=_meta(ctx, name, method, settings),
    )


def _save_source(model: Any, tokenizer: Any, labels: Sequence[str], target: Path) -> None:
    # The PyTorch source of a pruned/distilled variant is kept (safetensors) for lineage and the
    # benchmark: its parity reference is this model, not the teacher.
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    write_json(target / "labels.json", {"labels": list(labels)})
