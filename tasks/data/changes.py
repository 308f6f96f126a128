"""Has the data source changed since the last training? (the retraining trigger)"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task

from tasks.data.ingest import BUILTINS
from tuneline.config import load_params
from tuneline.io import sha256_file, write_json
from tuneline.settings import get_settings


@dataclass(frozen=True)
class SourceCheck:
    """The source, its content hash now, and the hash the last successful training used."""

    source: str
    sha256: str
    last_trained: str | None

    @property
    def changed(self) -> bool:
        return self.sha256 != self.last_trained


def state_file(root: Path) -> Path:
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return get_settings().root / "retraining" / f"{key}.json"


def source_hash(source: str) -> str:
    """Content hash of the source: the pinned archive for a built-in, the file bytes otherwise."""
    if source in BUILTINS:
        spec = BUILTINS[source]
        return f"{spec.dist.sha256}:{spec.member}"
    return sha256_file(source)


@task(retries=2, retry_delay_seconds=5)
def check_source(root: Path) -> SourceCheck:
    """Compare the source's content hash now with the one recorded after the last training.

    Args:
        root: the project.

    Returns:
        SourceCheck: the source, its hash now and the one last trained on.
    """
    import json

    source = load_params(root).data.source
    state = state_file(root)
    last = json.loads(state.read_text("utf-8")).get("sha256") if state.exists() else None
    return SourceCheck(source=source, sha256=source_hash(source), last_trained=last)


@task
def record_trained(root: Path, check: SourceCheck) -> None:
    """Remember the hash that has been trained on (written only after the flow succeeded).

    Args:
        root: the project.
        check: what `check_source` found before the run.
    """
    write_json(state_file(root), {"source": check.source, "sha256": check.sha256})


def gate_outcome(state: Any) -> str:
    """The gate's verdict from a finished training-flow state.

    A refused candidate is a normal retraining outcome (it is audited, and retraining on the
    same data would only repeat it), so it is returned; any other failure is raised.
    """
    from tuneline.errors import PromotionRefused

    if state.is_completed():
        return str(state.result().extra.get("gate", ""))
    try:
        state.result()  # raises the flow's own exception
    except PromotionRefused as exc:
        return "refused: " + " | ".join(exc.reasons)
    raise RuntimeError(f"training flow ended in state {state.type}")  # pragma: no cover
