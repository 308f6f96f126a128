"""The end-to-end training flow. It wires tasks together and raises when a gate fails."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks.data_stages import ingest_stage, prepare_stage, push_data, validate_stage
from tasks.prepare import read_prepared
from tuneline.lineage import split_md5s
from tuneline.summary import PipelineSummary


@flow(name="tuneline-training", log_prints=True)
def training_flow(project_root: str = ".", force_ingest: bool = False) -> PipelineSummary:
    """validate -> prepare (DVC stages) -> push the data version.

    Args:
        project_root: the project (DVC repo) to run in.
        force_ingest: re-read the source even if DVC thinks it unchanged (user files).

    Returns:
        The run summary.
    """
    root = Path(project_root)
    ingested = ingest_stage(root, force=force_ingest)
    validated = validate_stage(root, wait_for=[ingested])
    prepared = prepare_stage(root, wait_for=[validated])
    push_data(root, wait_for=[prepared])
    splits = read_prepared(root / "data" / "prepared")
    return PipelineSummary(
        data_md5=split_md5s(root),
        split_sizes=splits.sizes,
        data_counts=splits.counts,
        stages_ran={s.name: s.ran for s in (ingested, validated, prepared)},
    )
