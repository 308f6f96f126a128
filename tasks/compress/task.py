"""Compress the fine-tuned model, export every variant to ONNX with a hard parity check, score
them alike, and choose the fastest one inside the accuracy budget.

The task runs four stages in order: build (export every enabled variant and measure its
parity, tasks/compress/build.py), score (quality, latency and size in ONNX Runtime, the runtime
that serves), track (one MLflow child run per variant, tasks/compress/track.py) and select (the
fastest inside the budget, tasks/compress/select.py; the Pareto table goes on the parent run).

Variants (each toggled under `compress:` in params.yaml; the table is tasks/compress/specs.py):
fp32 (optimized ONNX, the baseline), int8_dynamic, int8_static (QDQ, calibrated on train rows),
prune_unstructured, prune_structured (FFN rows), distilled (fewer layers, KD), fp16 (GPU only).
Pruned and distilled variants are compared with their own PyTorch model; INT8/FP16 with the
FP32 PyTorch model under the looser quant_* thresholds, because quantization legitimately
moves logits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prefect import task

from serving.predictor import MODEL_FILE, VARIANT_FILE, OnnxTextClassifier
from serving.timing import latency_ms, throughput
from tasks.compress import track as T
from tasks.compress.build import BuiltVariant, build_variants, load_split
from tasks.compress.select import pareto_front, pareto_markdown, select_variant
from tasks.compress.specs import BASELINE
from tuneline.caching import cached, compress_key
from tuneline.config import Params
from tuneline.errors import ConfigError, ParityError
from tuneline.io import write_json
from tuneline.lineage import lineage_tags
from tuneline.metrics import classification_metrics


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
    """Score one variant in ORT with compress.num_threads intra-op threads.

    Args:
        variant_dir: the variant directory.
        texts: the test split's texts.
        y: their class ids.
        labels: class names.
        params: settings (compress.num_threads, compress.bench_rows).
        use_gpu: run on CUDA.

    Returns:
        Accuracy, macro-F1, per-class precision/recall/F1, p50/p95/p99 latency at batch 1 over
        the first compress.bench_rows texts (model time only: tokenizing costs every variant
        the same), rows/s at batch 32 ("throughput_b32") and the file size in MB.
    """
    cp = params.compress
    clf = OnnxTextClassifier(variant_dir, num_threads=cp.num_threads, use_gpu=use_gpu)
    rows_per_s, logits = throughput(clf, texts, batch_size=32)
    quality = classification_metrics(y, logits.argmax(-1).tolist(), labels)
    quality.pop("confusion")
    singles = [clf.encode([text]) for text in texts[: cp.bench_rows]]
    return {
        **{k: float(v) for k, v in quality.items()},
        **latency_ms(clf.run, singles),
        "throughput_b32": rows_per_s,
        "size_mb": (variant_dir / MODEL_FILE).stat().st_size / 2**20,
    }


def score_variants(
    built: Sequence[BuiltVariant],
    test: tuple[list[str], list[int]],
    labels: Sequence[str],
    params: Params,
) -> dict[str, dict[str, float]]:
    """The scores of every built variant (see `score_variant`), by name.

    Args:
        built: the variants.
        test: the test split (texts, class ids).
        labels: class names.
        params: settings.

    Returns:
        variant name -> scores.
    """
    return {b.name: score_variant(b.dir, *test, labels, params, use_gpu=b.use_gpu) for b in built}


def track_variants(
    built: Sequence[BuiltVariant],
    scores: dict[str, dict[str, float]],
    parent: T.ParentRun,
    lineage: dict[str, str],
) -> list[VariantRef]:
    """Record each variant's scores in its variant.json and log it as a child run of `parent`.

    Args:
        built: the variants.
        scores: their scores, by name.
        parent: the parent MLflow run.
        lineage: tags every child run carries (tuneline.lineage.lineage_tags).

    Returns:
        A reference per variant, in build order.
    """
    refs = []
    for b in built:
        info = json.loads((b.dir / VARIANT_FILE).read_text("utf-8"))
        record = {"metrics": scores[b.name], "parity": b.parity, "parent_run_id": parent.run_id}
        write_json(b.dir / VARIANT_FILE, {**info, **record})
        run_id = T.log_variant(
            parent, b.name, b.method, b.settings, scores[b.name], b.parity, b.dir, lineage
        )
        refs.append(VariantRef(b.name, b.method, str(b.dir), run_id, scores[b.name], b.parity))
    return refs


def fail_on_breaches(built: Sequence[BuiltVariant], parent: T.ParentRun) -> None:
    """Fail the compression when any variant breached parity (after all were logged).

    Args:
        built: the variants.
        parent: the parent run, tagged as failing parity.

    Raises:
        ParityError: listing every breach.
    """
    breaches = [b.breach for b in built if b.breach]
    if breaches:
        T.fail_parent(parent)
        raise ParityError("parity check failed:\n  - " + "\n  - ".join(breaches))


def choose_variant(
    scores: dict[str, dict[str, float]],
    refs: Sequence[VariantRef],
    skipped: dict[str, str],
    params: Params,
    output_dir: Path,
    parent: T.ParentRun,
) -> CompressResult:
    """Select the fastest variant inside the budget; write and log the Pareto table and plot.

    Args:
        scores: every variant's scores.
        refs: the tracked variants.
        skipped: variants not built, with why (reported as rejected).
        params: settings (compress.accuracy_budget, compress.max_recall_drop).
        output_dir: pareto.md, pareto.png and selection.json are written there.
        parent: the parent run they are logged to.

    Returns:
        The CompressResult.
    """
    cp = params.compress
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
    selection = output_dir / "selection.json"
    write_json(
        selection, {"chosen": chosen, "rejected": rejected, "chosen_dir": by_name[chosen].onnx_dir}
    )
    T.log_parent(parent, [md_path, png_path, selection], chosen, by_name[chosen].run_id)
    return CompressResult(by_name[chosen], tuple(refs), rejected, table)


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
    if not params.compress.fp32:
        raise ConfigError(["compress.fp32 must be true: FP32 ONNX is the baseline and fallback"])
    model_dir, prepared_dir, output_dir = Path(model_dir), Path(prepared_dir), Path(output_dir)
    label_src = model_dir / "labels.json"
    labels = json.loads(
        (label_src if label_src.exists() else prepared_dir / "labels.json").read_text("utf-8")
    )["labels"]
    test = load_split(prepared_dir, "test")
    built, skipped = build_variants(model_dir, prepared_dir, params, output_dir, labels, test[0])
    scores = score_variants(built, test, labels, params)
    parent = T.open_parent(parent_run_id)
    refs = track_variants(built, scores, parent, lineage_tags(prepared_dir.parent.parent))
    fail_on_breaches(built, parent)
    return choose_variant(scores, refs, skipped, params, output_dir, parent)


# Never retried (a failed export or parity check is a finding, not flaky I/O); skipped
# when its inputs, params and code are unchanged (tuneline.caching).
compress_model = cached(compress_model, compress_key)
