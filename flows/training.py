"""The end-to-end training flow. It wires tasks together and raises when a gate fails."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.promotion import release_variant
from tasks.compress.task import compress_model
from tasks.data.dvc_stages import (
    ingest_stage,
    prepare_stage,
    push_data,
    validate_stage,
    verify_data,
)
from tasks.data.prepare import read_prepared
from tasks.finetune.evaluate import evaluate_classifier
from tasks.finetune.plan import plan_runs
from tasks.finetune.task import finetune_classifier
from tuneline.caching import cached, compress_key, evaluate_key, finetune_key
from tuneline.config import load_params
from tuneline.lineage import split_md5s
from tuneline.settings import get_settings
from tuneline.summary import PipelineSummary, describe_release

# the expensive steps are skipped when their inputs, params and code are unchanged
finetune = cached(finetune_classifier, finetune_key)
evaluate = cached(evaluate_classifier, evaluate_key)
compress = cached(compress_model, compress_key)


@flow(name="tuneline-training", log_prints=True)
def training_flow(
    project_root: str = ".", force_ingest: bool = False, data_only: bool = False
) -> PipelineSummary:
    """validate -> prepare (DVC stages) -> fine-tune -> evaluate -> compress/export ->
    register -> gate -> package -> smoke -> promote.

    Args:
        project_root: the project (DVC repo) to run in.
        force_ingest: re-read the source even if DVC thinks it unchanged (user files).
        data_only: stop after the data stages (what `tuneline run --data-only` does).

    Returns:
        The run summary.

    Raises:
        DataValidationError: bad data (nothing after validation runs; registry untouched).
        ParityError: an exported variant disagrees with its PyTorch source.
        PromotionRefused: the gate or the Bento smoke test refused the candidate.
    """
    root = Path(project_root)
    params = load_params(root)
    ingested = ingest_stage(root, force=force_ingest)
    validated = validate_stage(root, wait_for=[ingested])
    prepared = prepare_stage(root, wait_for=[validated])
    pushed = push_data(root, wait_for=[prepared])
    verified = verify_data(root, wait_for=[pushed])  # re-hash, never trust mtime
    prepared_dir = root / "data" / "prepared"
    splits = read_prepared(prepared_dir)
    summary = PipelineSummary(
        data_md5=split_md5s(root),
        split_sizes=splits.sizes,
        data_counts=splits.counts,
        stages_ran={s.name: s.ran for s in (ingested, validated, prepared)},
    )
    if data_only:
        return summary
    dirs = plan_runs(root, prepared_dir, params, get_settings().runs_dir)
    tuned = finetune(
        prepared_dir,
        params,
        output_dir=Path(dirs.finetune),
        project_root=root,
        wait_for=[verified],
    )
    evaluated = evaluate(Path(tuned.model_dir), prepared_dir / "test.parquet", list(splits.labels))
    compressed = compress(
        Path(tuned.model_dir),
        prepared_dir,
        params,
        output_dir=Path(dirs.compress),
        parent_run_id=tuned.run_id,
    )
    released = release_variant(
        compressed.chosen.onnx_dir,
        params=params,
        finetune_run_id=tuned.run_id,
        variant_run_id=compressed.chosen.run_id,
        project_root=str(root),
    )
    return summary.with_extra(describe_release(tuned, evaluated, compressed, released, params))
