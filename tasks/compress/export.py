"""ONNX export primitives: export, check, optimize, parity (used by tasks/compress/build.py).

Exporter choice (torch 2.13, transformers 5): the dynamo exporter (`dynamo=True`, the torch
default) with `dynamic_shapes` for batch and sequence. The legacy TorchScript exporter
(`dynamo=False`) still runs on BERT but its graph disagrees with PyTorch by ~1e-2 in the logits
(the parity check below catches it), so it is not used.

Graph fusions: onnxscript's `optimize_for_ort` rewrites the dynamo graph into ONNX Runtime's
fused contrib operators (com.microsoft Attention, SkipLayerNormalization, BiasGelu), which
OpenVINO's ONNX reader also maps onto its own fused kernels. ORT's BERT optimizer (used before)
never fused attention here: transformers 5 builds its mask with ops its pattern does not match.
`expected_fusions` is what a BERT encoder of N layers must come out with; a graph that lost one
is flagged (tasks/compress/build.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.predictor import (
    INPUT_NAMES,
    LABELS_FILE,
    MODEL_FILE,
    OUTPUT_NAME,
    VARIANT_FILE,
    OnnxTextClassifier,
)
from tasks.compress.noise import quiet
from tuneline.errors import ParityError
from tuneline.io import atomic_dir, write_json
from tuneline.models import encode

# Rows per ORT run when measuring parity. Part of the measurement, not a speed knob: dynamic
# INT8 quantizes activations with ranges taken over the whole batch, so its logits depend on
# which rows share a run.
PARITY_BATCH = 32


def architecture(config: Any) -> dict[str, int]:
    """The sizes the benchmark needs to estimate FLOPs."""
    return {
        "layers": int(config.num_hidden_layers),
        "hidden": int(config.hidden_size),
        "heads": int(config.num_attention_heads),
        "intermediate": int(config.intermediate_size),
        "num_labels": int(config.num_labels),
    }


class _LogitsOnly:
    """Wraps a HF classifier so the graph has exactly input_ids, attention_mask -> logits."""

    @staticmethod
    def wrap(model: Any) -> Any:
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

        return Wrapper(model).eval()


def export_raw(model: Any, tokenizer: Any, path: Path, opset: int) -> None:
    """torch.onnx.export with dynamic batch and sequence axes into one self-contained file."""
    import torch
    from torch.export import Dim

    # Two rows of different lengths so padding is exercised while tracing.
    sample = encode(tokenizer, ["export sample text for tracing", "short"], 16)
    args = tuple(torch.from_numpy(sample[name]) for name in INPUT_NAMES)
    batch, seq = Dim("batch", min=1, max=4096), Dim("sequence", min=2, max=4096)
    with torch.no_grad(), quiet():
        program = torch.onnx.export(
            _LogitsOnly.wrap(model),
            args,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes={name: {0: batch, 1: seq} for name in INPUT_NAMES},
            opset_version=opset,
            dynamo=True,
            verbose=False,
            external_data=False,
        )
    assert program is not None  # dynamo=True always returns a program
    program.save(str(path), external_data=False)


FUSED_OPS = ("Attention", "SkipLayerNormalization", "BiasGelu")  # what a fused encoder runs on


def expected_fusions(layers: int) -> dict[str, int]:
    """The fused operators an N-layer BERT encoder's graph must contain.

    Args:
        layers: encoder layers.

    Returns:
        {op type: count}: one Attention and one BiasGelu per layer, two SkipLayerNormalization
        (after attention and after the FFN).
    """
    return {"Attention": layers, "SkipLayerNormalization": 2 * layers, "BiasGelu": layers}


def fusion_counts(path: Path) -> dict[str, int]:
    """How many of each fused operator the ONNX file at `path` contains (quantized files too)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = [node.op_type for node in model.graph.node]
    return {op: ops.count(op) for op in FUSED_OPS}


def missing_fusions(found: dict[str, int], layers: int) -> list[str]:
    """Expected fusions `found` lacks, as "Attention 0/6" strings (empty: fully fused)."""
    return [
        f"{op} {found.get(op, 0)}/{want}"
        for op, want in expected_fusions(layers).items()
        if found.get(op, 0) < want
    ]


def optimize(raw_path: Path, out_path: Path) -> dict[str, int]:
    """Check the raw graph, fuse it for ONNX Runtime (attention included), check, save.

    Returns:
        The fused-operator counts of the saved graph (`fusion_counts`).
    """
    import onnx
    from onnxscript import ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    onnx.checker.check_model(str(raw_path), full_check=True)
    fused, _ = optimize_for_ort(ir.load(str(raw_path)))
    ir.save(fused, str(out_path))
    onnx.checker.check_model(str(out_path))
    return fusion_counts(out_path)


def _opset_of(path: Path) -> int:
    """The default-domain opset actually in the file (the exporter may not honour a request)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


def write_variant_dir(
    target: Path,
    onnx_file: Path,
    tokenizer: Any,
    labels: Sequence[str],
    meta: dict[str, Any],
) -> None:
    """Assemble a complete variant directory atomically (model.onnx, tokenizer, labels, meta)."""
    with atomic_dir(target) as tmp:
        shutil.copyfile(onnx_file, tmp / MODEL_FILE)
        tokenizer.save_pretrained(str(tmp))
        write_json(tmp / LABELS_FILE, {"labels": list(labels)})
        write_json(tmp / VARIANT_FILE, meta)


def export_fp32(
    model: Any,
    tokenizer: Any,
    labels: Sequence[str],
    target: Path,
    *,
    opset: int,
    max_seq_len: int,
    work_dir: Path,
    meta: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Export + check + optimize `model` into the variant directory `target`.

    Returns:
        The fused-operator counts.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    raw, opt = work_dir / f"{target.name}.raw.onnx", work_dir / f"{target.name}.opt.onnx"
    export_raw(model, tokenizer, raw, opset)
    fusions = optimize(raw, opt)
    info = {
        "opset": _opset_of(opt),
        "max_seq_len": max_seq_len,
        "architecture": architecture(model.config),
        "fusions": fusions,
        **(meta or {}),
    }
    write_variant_dir(target, opt, tokenizer, labels, info)
    return fusions


def parity_stats(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Argmax agreement and max |delta logit| between two logit matrices.

    Args:
        reference: the PyTorch logits [rows, labels].
        candidate: the ONNX logits for the same rows.

    Returns:
        {"agreement", "max_abs_logit", "rows"}; a candidate with a NaN or infinite logit gets
        agreement 0 and an infinite distance, so it can never pass.

    Raises:
        ParityError: the shapes differ.
    """
    if reference.shape != candidate.shape:
        raise ParityError(
            f"logit shapes differ: PyTorch {reference.shape} vs ONNX {candidate.shape}"
        )
    if not np.all(np.isfinite(candidate)):
        return {"agreement": 0.0, "max_abs_logit": float("inf"), "rows": float(len(reference))}
    agreement = (
        float(np.mean(reference.argmax(-1) == candidate.argmax(-1))) if len(reference) else 1.0
    )
    max_abs = float(np.max(np.abs(reference - candidate))) if reference.size else 0.0
    return {"agreement": agreement, "max_abs_logit": max_abs, "rows": float(len(reference))}


def check_parity(
    name: str, stats: dict[str, float], *, max_abs_logit: float, min_agreement: float
) -> None:
    """Raise when a variant breaches either parity threshold.

    Args:
        name: the variant, for the message.
        stats: from `parity_stats`.
        max_abs_logit: the largest allowed |delta logit| (inclusive).
        min_agreement: the smallest allowed argmax agreement (inclusive).

    Raises:
        ParityError: naming the variant, both measured numbers and both thresholds.
    """
    problems = []
    if not stats["agreement"] >= min_agreement:
        problems.append(f"argmax agreement {stats['agreement']:.4f} < {min_agreement}")
    if not stats["max_abs_logit"] <= max_abs_logit:
        problems.append(f"max |delta logit| {stats['max_abs_logit']:.3g} > {max_abs_logit:g}")
    if problems:
        raise ParityError(
            f"variant '{name}' fails parity with its PyTorch source on "
            f"{int(stats['rows'])} test rows: " + "; ".join(problems)
        )


def measure_parity(
    variant_dir: Path,
    reference: np.ndarray,
    texts: Sequence[str],
    num_threads: int,
    *,
    use_gpu: bool = False,
) -> dict[str, float]:
    """Run the variant in ORT on `texts` and compare against the PyTorch `reference` logits.

    Args:
        variant_dir: the exported variant.
        reference: PyTorch logits of `texts` (tuneline.models.torch_logits).
        texts: the parity rows.
        num_threads: ORT intra-op threads.
        use_gpu: run on CUDA (the FP16 variant).

    Returns:
        `parity_stats` of the two.
    """
    clf = OnnxTextClassifier(variant_dir, num_threads=num_threads, use_gpu=use_gpu)
    return parity_stats(reference, clf.logits(texts, batch_size=PARITY_BATCH))
