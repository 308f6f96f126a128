"""Compress the fine-tuned model, export every variant to ONNX with a hard parity check, score
them alike, and choose the fastest one inside the accuracy budget.

Variants (each toggled under `compress:` in params.yaml): fp32 (optimized ONNX, the baseline),
int8_dynamic, int8_static (QDQ, calibrated on train rows), prune_unstructured, prune_structured
(FFN rows), distilled (fewer layers, KD), fp16 (GPU only). Pruned and distilled variants are
compared with their own PyTorch model; INT8/FP16 with the FP32 PyTorch model under the looser
quant_* thresholds, because quantization legitimately moves logits.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prefect import task

from tasks.compress.build import BASELINE, build_all, load_split
from tasks.compress.select import pareto_front, pareto_markdown, select_variant
from tuneline.caching import cached, compress_key
from tuneline.config import Params
from tuneline.errors import ConfigError, ParityError
from tuneline.io import write_json
from tuneline.metrics import classification_metrics
from tuneline.onnx_runtime import MODEL_FILE, VARIANT_FILE, OnnxClassifier
from tuneline.onnx_runtime import latency_ms as measure_latency
from tuneline.onnx_runtime import throughput as measure_throughput


@dataclass(frozen=True)
class VariantRef:
    """One exported variant: where it is, its MLflow child run, its scores and parity."""

    name: str
    method: str
    onnx_dir: str
    run_id: str | None
    metrics: dict[str, float]
    parity: dict[str, float]


@dataclass(frozen=True)
class CompressResult:
    """The chosen variant, every scored variant, why the others lost, and the Pareto table."""

    chosen: VariantRef
    variants: tuple[VariantRef, ...]
    rejected: dict[str, str]
    pareto_md: str


def score_variant(
    variant_dir: Path,
    texts: Sequence[str],
    y: Sequence[int],
    labels: Sequence[str],
    params: Params,
    *,
    use_gpu: bool = False,
) -> dict[str, float]:
    """Accuracy, macro-F1, per-class recall, p50/p95 latency at batch 1, rows/s at batch 32
    and file size, in ORT with compress.num_threads intra-op threads."""
    cp = params.compress
    clf = OnnxClassifier(variant_dir, num_threads=cp.num_threads, use_gpu=use_gpu)
    rows_per_s, logits = measure_throughput(clf, texts, batch_size=32)
    quality = classification_metrics(y, logits.argmax(-1).tolist(), labels)
    quality.pop("confusion")
    return {
        **{k: float(v) for k, v in quality.items()},
        **measure_latency(clf, texts[: cp.bench_rows]),
        "throughput_b32": rows_per_s,
        "size_mb": (variant_dir / MODEL_FILE).stat().st_size / 2**20,
    }


@task(retries=0)
def compress_model(
    model_dir: Path,
    prepared_dir: Path,
    params: Params,
    *,
    output_dir: Path,
    parent_run_id: str | None,
) -> CompressResult:
    """Build, export, parity-check, score and track every enabled variant; choose one.

    Args:
        model_dir: fine-tuned HF classifier directory (safetensors, tokenizer, labels.json).
        prepared_dir: data/prepared with {train,test}.parquet and labels.json.
        params: settings (compress section; train.max_seq_len; base.seed).
        output_dir: one variant directory per variant is written under it.
        parent_run_id: the fine-tune MLflow run; None makes a 'compress' run the parent.

    Returns:
        CompressResult with the chosen variant's reference.

    Raises:
        ConfigError: compress.fp32 is false (FP32 is the baseline and fallback).
        ParityError: any variant breaches its parity thresholds (every breach is listed).
    """
    import torch

    from tasks.compress import track as T
    from tuneline.lineage import lineage_tags

    cp = params.compress
    if not cp.fp32:
        raise ConfigError(["compress.fp32 must be true: FP32 ONNX is the baseline and fallback"])
    model_dir, prepared_dir, output_dir = Path(model_dir), Path(prepared_dir), Path(output_dir)
    label_src = model_dir / "labels.json"
    labels = json.loads(
        (label_src if label_src.exists() else prepared_dir / "labels.json").read_text("utf-8")
    )["labels"]
    test_texts, test_y = load_split(prepared_dir, "test")
    work = output_dir / ".work"
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cp.num_threads))  # PyTorch side timed/trained like ORT
    try:
        built, skipped, breaches = build_all(
            model_dir, prepared_dir, params, output_dir, work, labels, test_texts
        )
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(work, ignore_errors=True)
    scores = {
        b.name: score_variant(b.dir, test_texts, test_y, labels, params, use_gpu=b.use_gpu)
        for b in built
    }
    client, parent, exp_id, created = T.open_parent(parent_run_id)
    root_tags = lineage_tags(prepared_dir.parent.parent)
    refs = []
    for b in built:
        info = json.loads((b.dir / VARIANT_FILE).read_text("utf-8"))
        write_json(
            b.dir / VARIANT_FILE,
            {**info, "metrics": scores[b.name], "parity": b.parity, "parent_run_id": parent},
        )
        run_id = T.log_variant(
            client,
            exp_id,
            parent,
            b.name,
            b.method,
            b.settings,
            scores[b.name],
            b.parity,
            b.dir,
            root_tags,
        )
        refs.append(VariantRef(b.name, b.method, str(b.dir), run_id, scores[b.name], b.parity))
    if breaches:
        client.set_tag(parent, "tuneline.parity", "failed")
        if created:
            client.set_terminated(parent, status="FAILED")
        raise ParityError("parity check failed:\n  - " + "\n  - ".join(breaches))
    chosen, rejected = select_variant(
        scores,
        baseline=BASELINE,
        accuracy_budget=cp.accuracy_budget,
        max_recall_drop=cp.max_recall_drop,
    )
    rejected = {**rejected, **skipped}
    table = pareto_markdown(scores, chosen, rejected)
    md_path, png_path = output_dir / "pareto.md", output_dir / "pareto.png"
    md_path.write_text(f"# Compression: chosen `{chosen}`\n\n{table}", encoding="utf-8")
    T.plot_pareto(scores, chosen, png_path, pareto_front(scores))
    by_name = {r.name: r for r in refs}
    write_json(
        output_dir / "selection.json",
        {"chosen": chosen, "rejected": rejected, "chosen_dir": by_name[chosen].onnx_dir},
    )
    T.log_parent(
        client,
        parent,
        [md_path, png_path, output_dir / "selection.json"],
        chosen,
        by_name[chosen].run_id,
        created,
    )
    return CompressResult(by_name[chosen], tuple(refs), rejected, table)


# Never retried (a failed export or parity check is a finding, not flaky I/O); skipped
# when its inputs, params and code are unchanged (tuneline.caching).
compress_model = cached(compress_model, compress_key)
