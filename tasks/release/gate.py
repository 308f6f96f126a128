"""Gate: score the candidate and the champion, then decide (tasks/release/decision.py).

Both models are scored here, on the candidate's DVC-pinned test split, with the artifact that
will be served (ONNX through onnxruntime); the decision itself is pure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from serving.predictor import OnnxTextClassifier
from serving.timing import latency_ms
from tasks.release.card import Verdict
from tasks.release.decision import Decision, Scorecard, decide_promotion
from tasks.release.outcome import measured, publish_outcome
from tasks.release.register import download_version
from tasks.release.trust import trust_figures
from tuneline import audit, registry
from tuneline.config import Params
from tuneline.lineage import PREPARED, SPLITS, split_md5s, validation_result
from tuneline.metrics import classification_metrics
from tuneline.processes import run_child


@dataclass(frozen=True)
class GateResult:
    """The decision plus what it was made on (champion as read before the gate)."""

    name: str
    version: str
    champion_version: str | None
    decision: Decision
    candidate: Scorecard
    champion: Scorecard | None
    project_root: str | None = None  # whose pinned splits it was scored on (for the card)


def data_committed(project_root: Path | str) -> tuple[bool, str]:
    """Whether the splits are DVC-committed and unchanged (`dvc status --json` clean for them).

    Args:
        project_root: the DVC project.

    Returns:
        (committed, explanation).
    """
    root = Path(project_root)
    md5s = split_md5s(root)
    unlocked = [s for s in SPLITS if not md5s.get(s) or md5s[s].startswith("unlocked:")]
    if unlocked:
        return False, f"splits not recorded in dvc.lock: {unlocked}"
    try:
        proc = run_child(
            [sys.executable, "-m", "dvc", "status", "--json"],
            env=dict(os.environ),
            cwd=root,
            timeout=120,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        return False, f"dvc status could not run: {exc}"
    if proc.returncode != 0:
        return False, f"dvc status failed: {proc.stderr.strip()[-300:]}"
    status: dict[str, Any] = json.loads(proc.stdout or "{}")
    dirty = [
        key
        for key, changes in status.items()
        if str(PREPARED) in key or str(PREPARED) in json.dumps(changes) or "split" in key
    ]
    if dirty:
        return False, f"dvc status dirty for {dirty}"
    # dvc status trusts size + mtime; re-hash every byte so an in-place edit cannot pass
    from tuneline.errors import DataValidationError
    from tuneline.lineage import verify_splits

    try:
        verify_splits(root, cache=False)
    except DataValidationError as exc:
        return False, "; ".join(exc.failures)
    return True, "dvc status clean and every split re-hashes to its dvc.lock md5"


def score_variant(
    variant_dir: Path | str,
    test_path: Path | str,
    labels: list[str],
    *,
    latency_rows: int,
    parity_passed: bool,
    data_validated: bool,
    is_committed: bool,
    version: str | None = None,
) -> Scorecard:
    """Score an ONNX variant on the test split: correctness, metrics, batch-1 p95 latency, size.

    Predictions are compared by label *name*, so a champion with a differently ordered label
    map is still judged on the same truths.
    """
    model = OnnxTextClassifier(variant_dir)
    test = pd.read_parquet(test_path)
    texts = test["text"].astype(str).tolist()
    truth = [labels[int(i)] for i in test["label"]]
    predicted = []
    for start in range(0, len(texts), 64):
        predicted += [p.label for p in model.predict(texts[start : start + 64])]
    # What one request costs as served (tokenize, run, softmax), one text at a time. No
    # warm-up calls: the model has just predicted the whole split.
    latency = latency_ms(
        lambda text: model.predict([text]), texts[: max(1, latency_rows)], warmup=0
    )
    # Judge by label name; a name outside the candidate's map (a champion with another label
    # set) gets its own column so it counts as wrong without inventing a class.
    names = labels + sorted(set(predicted) - set(labels))
    index = {name: i for i, name in enumerate(names)}
    metrics = classification_metrics(
        [index[t] for t in truth], [index[p] for p in predicted], names
    )
    correct = tuple(t == p for t, p in zip(truth, predicted, strict=True))
    return Scorecard(
        correct=correct,
        accuracy=float(np.mean(correct)) if correct else 0.0,
        macro_f1=float(np.mean([metrics[f"f1_{name}"] for name in labels])),
        recall={name: float(metrics[f"recall_{name}"]) for name in labels},
        p95_latency_ms=latency["latency_p95_ms"],
        size_mb=(Path(variant_dir) / "model.onnx").stat().st_size / 2**20,
        parity_passed=parity_passed,
        data_validated=data_validated,
        data_committed=is_committed,
        version=version,
        trust=trust_figures(variant_dir),  # measured through this runtime when it was built
    )


@task
def gate_version(
    name: str, version: str, *, params: Params, project_root: Path | str = "."
) -> GateResult:
    """Score `version` and the current champion on the pinned test split, decide, audit.

    Args:
        name: registered model.
        version: the candidate's version.
        params: settings; `params.gate` holds the rules and budgets.
        project_root: the DVC project whose pinned test split both models are scored on.

    Returns:
        GateResult; the champion version it holds is the compare-and-set's `expected`.
    """
    root = Path(project_root)
    champion_version = registry.alias_version(name, registry.CHAMPION)
    labels = [str(x) for x in json.loads((root / PREPARED / "labels.json").read_text())["labels"]]
    test_path = root / PREPARED / "test.parquet"
    tags = registry.version_tags(name, version)
    committed, why = data_committed(root)
    pinned = split_md5s(root).get("test")
    if tags.get("data_md5_test") != pinned:
        committed = False
        why = f"candidate was built on test split {tags.get('data_md5_test')}, found {pinned}"
    validated = bool(validation_result(root).get("success"))
    with tempfile.TemporaryDirectory(prefix="tuneline-gate-") as tmp:
        cand_dir = download_version(name, version, Path(tmp) / "candidate")
        candidate = score_variant(
            cand_dir,
            test_path,
            labels,
            latency_rows=params.gate.latency_rows,
            parity_passed=tags.get("parity_passed") == "true",
            data_validated=validated,
            is_committed=committed,
            version=version,
        )
        champion = None
        if champion_version is not None and champion_version != version:
            champ_dir = download_version(name, champion_version, Path(tmp) / "champion")
            champion = score_variant(
                champ_dir,
                test_path,
                labels,
                latency_rows=params.gate.latency_rows,
                parity_passed=True,
                data_validated=validated,
                is_committed=committed,
                version=champion_version,
            )
    decision = decide_promotion(candidate, champion, params.gate)
    if not committed:
        decision = Decision(decision.promote, (*decision.reasons, f"NOTE {why}"), decision.deltas)
    registry.set_version_tag(name, version, "gate", "passed" if decision.promote else "refused")
    if not decision.promote:  # a pass is published by promote_version, after the smoke test
        verdict = Verdict("refused", decision.reasons, champion_version, measured(candidate))
        publish_outcome(name, version, root, verdict)
    audit.append_audit(
        {
            "event": "gate",
            "name": name,
            "version": version,
            "champion": champion_version,
            "outcome": "passed" if decision.promote else "refused",
            "reasons": list(decision.reasons),
            "deltas": decision.deltas,
        }
    )
    return GateResult(name, version, champion_version, decision, candidate, champion, str(root))
