"""The end-to-end training flow: every step in order, in stage blocks, through to promote.

It wires tasks together and raises when a gate fails; the tasks do the work. Fine-tuning and
compression are cached (tuneline.caching): a rerun on the same data, params and code returns
their recorded results and registers nothing new.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks.compress.task import compress_model
from tasks.data.dvc_stages import (
    ingest_dataset,
    prepare_dataset,
    push_dataset,
    summarize_dataset,
    validate_dataset,
    verify_dataset,
)
from tasks.finetune.plan import plan_run_dirs
from tasks.finetune.task import finetune_classifier
from tasks.release.gate import gate_version
from tasks.release.package import package_version
from tasks.release.promote import (
    PromotionResult,
    hold_rolled_back,
    promote_version,
    skip_unchanged,
)
from tasks.release.register import register_variant
from tasks.release.smoke import smoke_test_bento
from tuneline.config import Params, load_params
from tuneline.console import stage
from tuneline.errors import PromotionRefused
from tuneline.headlines import (
    compress_headline,
    data_headline,
    finetune_headline,
    release_headline,
)
from tuneline.lineage import PREPARED
from tuneline.summary import PipelineSummary, brief_release, describe_release


@flow(name="tuneline-training", log_prints=True)
def training_flow(
    project_root: str = ".", force_ingest: bool = False, data_only: bool = False
) -> PipelineSummary:
    """data (ingest -> validate -> prepare -> push -> verify) -> fine-tune (scores the test
    split) -> compress -> release (register -> gate -> package -> smoke-test -> promote).

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
    prepared_dir = root / PREPARED

    # data: DVC stages, so dvc.lock records every hash
    with stage("data") as line:
        ingested = ingest_dataset(root, force=force_ingest)
        validated = validate_dataset(root, wait_for=[ingested])
        prepared = prepare_dataset(root, wait_for=[validated])
        pushed = push_dataset(root, wait_for=[prepared])
        data_md5 = verify_dataset(root, wait_for=[pushed])  # re-hash, never trust mtime
        summary = summarize_dataset(root, data_md5, [ingested, validated, prepared])
        line.figure = data_headline(summary, root)
    if data_only:
        return summary

    with stage("fine-tune") as line:
        dirs = plan_run_dirs(root, prepared_dir, params)
        tuned = finetune_classifier(
            prepared_dir,
            params,
            output_dir=Path(dirs.finetune),
            project_root=root,
            wait_for=[data_md5],
        )
        line.figure = finetune_headline(tuned)

    with stage("compress") as line:
        compressed = compress_model(
            Path(tuned.model_dir),
            prepared_dir,
            params,
            output_dir=Path(dirs.compress),
            parent_run_id=tuned.run_id,
        )
        line.figure = compress_headline(compressed)

    # release: a candidate already champion, or one a person rolled back from, stops here
    with stage("release") as line:
        registered = register_variant(
            compressed.chosen.onnx_dir,
            params=params,
            finetune_run_id=tuned.run_id,
            variant_run_id=compressed.chosen.run_id,
            project_root=root,
        )
        released = (
            skip_unchanged(registered.name, registered.version, registered.reused)
            or hold_rolled_back(registered.name, registered.version)
            or release_version(registered.name, registered.version, params, root)
        )
        line.figure = release_headline(released)
    return summary.with_extra(
        describe_release(tuned, compressed, released, params),
        brief_release(tuned, compressed, released),
    )


def release_version(name: str, version: str, params: Params, root: Path) -> PromotionResult:
    """gate -> package -> smoke-test -> promote: the end of the training flow, and all of
    `tuneline promote N` (flows/promotion.py). Call inside a flow.

    Args:
        name: registered model.
        version: the registered candidate.
        params: settings.
        root: the project whose pinned test split the gate and the smoke test read.

    Returns:
        PromotionResult "promoted", or "lost_race" when champion moved during the gate.

    Raises:
        PromotionRefused: the gate or the Bento smoke test refused the candidate (every
            reason listed).
    """
    gated = gate_version(name, version, params=params, project_root=root)
    if not gated.decision.promote:
        raise PromotionRefused(list(gated.decision.reasons))
    bento = package_version(name, version, params=params)
    smoke = smoke_test_bento(bento, params=params, project_root=root)
    promoted = promote_version(gated, smoke)
    if promoted.outcome == "refused":
        raise PromotionRefused(list(promoted.reasons))
    return promoted
