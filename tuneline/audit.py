"""The audit trail: every gate decision, promotion, hold and rollback, kept three ways.

A JSONL file under <TUNELINE_HOME>/audit (written first, so a decision survives a tracking
store that is down), one run in the `audit` MLflow experiment per decision, and a
`last_decision` tag on the registered model.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneline.registry import client, experiment_id, with_retries
from tuneline.settings import get_settings

AUDIT_EXPERIMENT = "audit"


def audit_path() -> Path:
    """The JSONL trail: one line per decision, oldest first."""
    return get_settings().root / "audit" / "decisions.jsonl"


def append_audit(record: dict[str, Any]) -> dict[str, Any]:
    """Append one decision to the audit trail: JSONL file, `audit` MLflow run, model tag.

    The JSONL line is written first (fsync'd, under an append lock) so the decision is kept
    even if the tracking store is down; MLflow failures then propagate after retries.

    Args:
        record: the decision: event, name, version, outcome, reasons, deltas, ...

    Returns:
        The record with `time` and the MLflow `audit_run_id` added.
    """
    record = {"time": datetime.now(UTC).isoformat(timespec="seconds"), **record}
    path = audit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    mlc = client()
    exp_id = experiment_id(AUDIT_EXPERIMENT)
    run = with_retries(
        lambda: mlc.create_run(
            exp_id,
            run_name=f"{record.get('event')}-{record.get('name')}-v{record.get('version')}",
            tags={
                "event": str(record.get("event")),
                "outcome": str(record.get("outcome")),
                "registered_model": str(record.get("name")),
                "version": str(record.get("version")),
            },
        )
    )
    record = {**record, "audit_run_id": run.info.run_id}
    with_retries(lambda: mlc.log_dict(run.info.run_id, record, "decision.json"))
    numeric = {k: float(v) for k, v in (record.get("deltas") or {}).items()}
    if numeric:
        with_retries(
            lambda: mlc.log_batch(
                run.info.run_id,
                metrics=[_metric(f"delta_{k}", v) for k, v in numeric.items()],
            )
        )
    with_retries(lambda: mlc.set_terminated(run.info.run_id))
    if record.get("name"):
        summary = json.dumps(
            {k: record.get(k) for k in ("time", "event", "version", "outcome", "audit_run_id")}
        )
        with_retries(lambda: mlc.set_registered_model_tag(record["name"], "last_decision", summary))
    return record


def _metric(key: str, value: float) -> Any:
    from mlflow.entities import Metric

    safe = re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)
    return Metric(safe, value, int(time.time() * 1000), 0)


def read_audit() -> list[dict[str, Any]]:
    """Every audit record in the JSONL trail, oldest first ([] when none)."""
    path = audit_path()
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
