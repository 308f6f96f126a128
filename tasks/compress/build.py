"""Making every enabled variant directory and measuring its parity (used by tasks/compress/task.py).

FP32 is exported from the fine-tuned model; INT8/FP16 transform the FP32 file and are compared
with the FP32 PyTorch logits under the quant_* thresholds; pruned and distilled variants are
exported from their own PyTorch model and compared with it under the FP32 thresholds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.compress import variants as V
from tasks.compress.distill import distill, finetune_steps
from tasks.compress.export import (
    check_parity,
    export_fp32,
    measure_parity,
    parity_stats,
    torch_logits,
    write_variant_dir,
)
from tuneline.config import Params
from tuneline.errors import ParityError
from tuneline.io import write_json
from tuneline.onnx_runtime import MODEL_FILE, VARIANT_FILE, OnnxClassifier, cuda_available

BASELINE = "fp32"


@dataclass
class BuiltVariant:
    name: str
    method: str
    dir: Path
    settings: dict[str, Any]
    parity: dict[str, float]
    use_gpu: bool = False


def load_split(prepared_dir: Path, name: str) -> tuple[list[str], list[int]]:
    df = pd.read_parquet(prepared_dir / f"{name}.parquet")
    return df["text"].astype(str).tolist(), [int(v) for v in df["label"]]


def _save_source(model: Any, tokenizer: Any, labels: Sequence[str], target: Path) -> None:
    # The PyTorch source of a pruned/distilled variant is kept (safetensors) for lineage and the
    # benchmark: its parity reference is this model, not the teacher.
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    write_json(target / "labels.json", {"labels": list(labels)})


def _torch_variants(
    teacher: Any, tokenizer: Any, params: Params, train: tuple[list[str], list[int]]
) -> list[tuple[str, str, Callable[[], Any], dict[str, Any]]]:
    cp = params.compress

    def pruned(make: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            model = make()
            if cp.prune_finetune_steps > 0:
                finetune_steps(model, tokenizer, *train, params, cp.prune_finetune_steps)
            return V.make_permanent(model)

        return run

    def student() -> Any:
        return distill(
            teacher, V.build_student(teacher, cp.distill_layers), tokenizer, *train, params
        )

    out: list[tuple[str, str, Callable[[], Any], dict[str, Any]]] = []
    prune_cfg = {"sparsity": cp.sparsity, "prune_finetune_steps": cp.prune_finetune_steps}
    if cp.prune_unstructured:
        out.append(
            (
                "prune_unstructured",
                "magnitude_l1_global",
                pruned(lambda: V.prune_unstructured(teacher, cp.sparsity)),
                prune_cfg,
            )
        )
    if cp.prune_structured:
        out.append(
            (
                "prune_structured",
                "ffn_rows_l2",
                pruned(lambda: V.prune_ffn_rows(teacher, cp.sparsity)),
                prune_cfg,
            )
        )
    if cp.distill:
        out.append(
            (
                "distilled",
                "kd_student",
                student,
                {
                    "distill_layers": cp.distill_layers,
                    "temperature": cp.distill_temperature,
                    "alpha": cp.distill_alpha,
                    "epochs": cp.distill_epochs,
                    "max_steps": cp.distill_max_steps,
                },
            )
        )
    return out


def build_all(
    model_dir: Path,
    prepared_dir: Path,
    params: Params,
    output_dir: Path,
    work: Path,
    labels: list[str],
    test_texts: list[str],
) -> tuple[list[BuiltVariant], dict[str, str], list[str]]:
    from tuneline.models import load_classifier

    cp, max_len = params.compress, params.train.max_seq_len
    teacher, tokenizer = load_classifier(model_dir)
    train = load_split(prepared_dir, "train")
    built: list[BuiltVariant] = []
    skipped: dict[str, str] = {}
    breaches: list[str] = []

    def checked(b: BuiltVariant, quant: bool) -> None:
        try:
            check_parity(
                b.name,
                b.parity,
                max_abs_logit=cp.quant_parity_max_abs_logit if quant else cp.parity_max_abs_logit,
                min_agreement=cp.quant_parity_min_agreement if quant else cp.parity_min_agreement,
            )
        except ParityError as exc:
            breaches.append(str(exc))
        built.append(b)

    def meta(name: str, method: str, settings: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "method": method, "settings": settings, "source": str(model_dir)}

    teacher_ref = torch_logits(teacher, tokenizer, test_texts, max_len)
    fp32_dir = output_dir / BASELINE
    fusions = export_fp32(
        teacher,
        tokenizer,
        labels,
        fp32_dir,
        opset=cp.opset,
        max_seq_len=max_len,
        work_dir=work,
        meta=meta(BASELINE, "onnx_fp32_optimized", {}),
    )
    fp32_settings = {"opset": cp.opset, "fusions": json.dumps(fusions)}
    parity = measure_parity(fp32_dir, teacher_ref, test_texts, cp.num_threads)
    checked(
        BuiltVariant(BASELINE, "onnx_fp32_optimized", fp32_dir, fp32_settings, parity), quant=False
    )
    fp32_info = json.loads((fp32_dir / VARIANT_FILE).read_text("utf-8"))

    def from_fp32(
        name: str,
        method: str,
        settings: dict[str, Any],
        make: Callable[[Path], None],
        gpu: bool = False,
    ) -> None:
        out_file = work / f"{name}.onnx"
        make(out_file)
        info = {**fp32_info, **meta(name, method, settings)}
        write_variant_dir(output_dir / name, out_file, tokenizer, labels, info)
        clf = OnnxClassifier(output_dir / name, num_threads=cp.num_threads, use_gpu=gpu)
        stats = parity_stats(teacher_ref, clf.predict_logits(test_texts))
        checked(BuiltVariant(name, method, output_dir / name, settings, stats, gpu), quant=True)

    fp32_file = fp32_dir / MODEL_FILE
    if cp.dynamic_int8:
        from_fp32(
            "int8_dynamic",
            "ort_quantize_dynamic",
            {"weight_type": "QInt8"},
            lambda out: V.quantize_dynamic_int8(fp32_file, out),
        )
    if cp.static_int8:
        rng = np.random.default_rng(params.base.seed)
        pick = rng.permutation(len(train[0]))[: cp.calibration_rows]
        calib = [train[0][i] for i in sorted(pick)]
        from_fp32(
            "int8_static",
            "ort_quantize_static_qdq",
            {"calibration_rows": len(calib), "calibrate_method": "MinMax", "format": "QDQ"},
            lambda out: V.quantize_static_int8(fp32_file, out, tokenizer, calib, max_len),
        )
    for name, method, make_model, settings in _torch_variants(teacher, tokenizer, params, train):
        model = make_model()
        if name == "prune_unstructured":
            settings = {**settings, "achieved_sparsity": round(V.sparsity_of(model), 4)}
        _save_source(model, tokenizer, labels, output_dir / "sources" / name)
        export_fp32(
            model,
            tokenizer,
            labels,
            output_dir / name,
            opset=cp.opset,
            max_seq_len=max_len,
            work_dir=work,
            meta=meta(name, method, settings),
        )
        ref = torch_logits(model, tokenizer, test_texts, max_len)
        parity = measure_parity(output_dir / name, ref, test_texts, cp.num_threads)
        checked(BuiltVariant(name, method, output_dir / name, settings, parity), quant=False)
    if cp.fp16:
        if cuda_available():
            from_fp32(
                "fp16",
                "ort_float16",
                {"keep_io_types": True},
                lambda out: V.convert_fp16(fp32_file, out),
                gpu=True,
            )
        else:
            skipped["fp16"] = "skipped: CUDAExecutionProvider is not available (FP16 is GPU-only)"
    return built, skipped, breaches
