"""Gate: may the candidate replace the champion? A pure decision over two scorecards.

Both models are scored here, on the candidate's DVC-pinned test split, with the artifact that
will be served (ONNX through onnxruntime). `decide_promotion` itself does no I/O, so every rule
is unit-tested on hand-made scorecards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from scipy.stats import binomtest

from serving.predictor import OnnxTextClassifier
from tuneline import registry
from tuneline.config import GateParams, Params
from tuneline.lineage import PREPARED, SPLITS, split_md5s, validation_result
from tuneline.metrics import classification_metrics


@dataclass(frozen=True)
class Scorecard:
    """What the gate knows about one model on the pinned test split."""

    correct: tuple[bool, ...]  # per test example, in file order
    accuracy: float
    macro_f1: float
    recall: dict[str, float]  # per class name
    p95_latency_ms: float
    size_mb: float
    parity_passed: bool
    data_validated: bool
    data_committed: bool
    version: str | None = None


@dataclass(frozen=True)
class Decision:
    """promote: the verdict; reasons: every check, "PASS ..." or "FAIL ..."; deltas: cand-champ."""

    promote: bool
    reasons: tuple[str, ...]
    deltas: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    """The decision plus what it was made on (champion as read before the gate)."""

    name: str
    version: str
    champion_version: str | None
    decision: Decision
    candidate: Scorecard
    champion: Scorecard | None


def decide_promotion(
    candidate: Scorecard, champion: Scorecard | None, policy: GateParams
) -> Decision:
    """Apply every promotion rule and record each outcome, pass or fail.

    Rules: data validated and committed; parity passed; accuracy and macro-F1 at or above the
    floors; every class recall at or above `min_class_recall`; p95 latency and size within
    budget; and with a champion: not worse by a one-sided exact McNemar test (binomial test on
    the discordant pairs, level `alpha`) and no class recall down by more than
    `max_recall_drop`.

    Returns:
        Decision; `promote` is True only when every rule passed.
    """
    checks: list[tuple[bool, str]] = [
        (candidate.data_validated, "data validation passed"),
        (candidate.data_committed, "data version committed (dvc status clean for the splits)"),
        (candidate.parity_passed, "ONNX parity passed"),
        (
            candidate.accuracy >= policy.min_accuracy,
            f"accuracy {candidate.accuracy:.4f} >= floor {policy.min_accuracy}",
        ),
        (
            candidate.macro_f1 >= policy.min_macro_f1,
            f"macro-F1 {candidate.macro_f1:.4f} >= floor {policy.min_macro_f1}",
        ),
        (
            candidate.p95_latency_ms <= policy.max_p95_latency_ms,
            f"p95 latency {candidate.p95_latency_ms:.2f} ms <= {policy.max_p95_latency_ms} ms",
        ),
        (
            candidate.size_mb <= policy.max_size_mb,
            f"size {candidate.size_mb:.2f} MB <= {policy.max_size_mb} MB",
        ),
    ]
    for name, value in sorted(candidate.recall.items()):
        checks.append(
            (
                value >= policy.min_class_recall,
                f"recall of '{name}' {value:.4f} >= floor {policy.min_class_recall}",
            )
        )
    deltas: dict[str, float] = {}
    if champion is None:
        checks.append((True, "no champion: floors and checks alone decide"))
    else:
        deltas = {
            "accuracy": candidate.accuracy - champion.accuracy,
            "macro_f1": candidate.macro_f1 - champion.macro_f1,
            "p95_latency_ms": candidate.p95_latency_ms - champion.p95_latency_ms,
            "size_mb": candidate.size_mb - champion.size_mb,
        }
        checks.append(_mcnemar(candidate.correct, champion.correct, policy.alpha))
        for name, before in sorted(champion.recall.items()):
            after = candidate.recall.get(name, 0.0)
            deltas[f"recall_{name}"] = after - before
            checks.append(
                (
                    before - after <= policy.max_recall_drop,
                    f"recall of '{name}' {after:.4f} vs champion {before:.4f}: "
                    f"drop {max(0.0, before - after):.4f} <= {policy.max_recall_drop}",
                )
            )
    reasons = tuple(f"{'PASS' if ok else 'FAIL'} {text}" for ok, text in checks)
    return Decision(all(ok for ok, _ in checks), reasons, deltas)


def _mcnemar(cand: tuple[bool, ...], champ: tuple[bool, ...], alpha: float) -> tuple[bool, str]:
    if len(cand) != len(champ):
        return False, f"paired test impossible: {len(cand)} vs {len(champ)} test examples"
    c = np.asarray(cand, dtype=bool)
    h = np.asarray(champ, dtype=bool)
    wins = int(np.sum(c & ~h))  # candidate right, champion wrong
    losses = int(np.sum(~c & h))
    if wins + losses == 0:
        return True, "McNemar: no discordant pairs (tie), not worse than champion"
    # H1: the candidate is wrong more often on the pairs where the two disagree.
    p = float(binomtest(losses, wins + losses, 0.5, alternative="greater").pvalue)
    return (
        p >= alpha,
        f"McNemar exact: candidate wins {wins}, loses {losses}, p(worse)={p:.4g} "
        f"{'>=' if p >= alpha else '<'} alpha {alpha}",
    )


def data_committed(project_root: Path | str) -> tuple[bool, str]:
    """Whether the splits are DVC-committed and unchanged (`dvc status --json` clean for them).

    Returns:
        (committed, explanation).
    """
    root = Path(project_root)
    md5s = split_md5s(root)
    unlocked = [s for s in SPLITS if not md5s.get(s) or md5s[s].startswith("unlocked:")]
    if unlocked:
        return False, f"splits not recorded in dvc.lock: {unlocked}"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", "status", "--json"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
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
    timings = []
    for text in texts[: max(1, latency_rows)]:
        began = time.perf_counter()
        model.predict([text])
        timings.append((time.perf_counter() - began) * 1000)
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
        p95_latency_ms=float(np.percentile(timings, 95)),
        size_mb=(Path(variant_dir) / "model.onnx").stat().st_size / 2**20,
        parity_passed=parity_passed,
        data_validated=data_validated,
        data_committed=is_committed,
        version=version,
    )


def gate_version(
    name: str, version: str, *, params: Params, project_root: Path | str = "."
) -> GateResult:
    """Score `version` and the current champion on the pinned test split, decide, audit.

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
        cand_dir = registry.download_version(name, version, Path(tmp) / "candidate")
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
            champ_dir = registry.download_version(name, champion_version, Path(tmp) / "champion")
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
    registry.append_audit(
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
    return GateResult(name, version, champion_version, decision, candidate, champion)


@task(name="gate-version")
def gate_version_task(
    name: str, version: str, params: Params, project_root: str = "."
) -> GateResult:
    """Prefect wrapper of `gate_version`."""
    return gate_version(name, version, params=params, project_root=project_root)
