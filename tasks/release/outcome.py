"""Write a gate's outcome back where the MLflow UI shows it: the version's tags (outcome,
reasons, the champion compared with, the request tag's answer), its Description (the model
card) and the card's HTML and plots on the version's run.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from tasks.release.card import CARD_DIR, Verdict, render_card
from tasks.release.decision import Scorecard
from tuneline import registry
from tuneline.decisions import (
    COMPARED_TAG,
    GATE_TAG,
    PASSED,
    REASONS_TAG,
    REFUSED,
    REQUEST_TAG,
    REQUESTED,
)

log = logging.getLogger("tuneline.card")


def measured(card: Scorecard) -> dict[str, float]:
    """What the gate measured on the served artifact, for the card."""
    return {
        "accuracy": card.accuracy,
        "macro_f1": card.macro_f1,
        "p95_latency_ms": card.p95_latency_ms,
        "size_mb": card.size_mb,
    }


def publish_outcome(name: str, version: str, root: Path | str | None, verdict: Verdict) -> None:
    """Tag the version with the decision, answer its request tag, and write its model card.

    A card that cannot be built (a run or artifact gone from the store) is logged and leaves
    the decision on the version all the same; the decision tag is written last.

    Args:
        name: registered model; version: the gated version.
        root: the project whose pinned splits it was gated on.
        verdict: outcome ("passed" / "refused"), every reason, the champion compared with.
    """
    from mlflow.exceptions import MlflowException

    fails = [r for r in verdict.reasons if not r.startswith("PASS")]
    ordered = [*fails, *(r for r in verdict.reasons if r.startswith("PASS"))]
    outcome = PASSED if verdict.outcome == PASSED else REFUSED
    registry.set_version_tag(name, version, REASONS_TAG, "\n".join(ordered)[:90_000])
    registry.set_version_tag(name, version, COMPARED_TAG, verdict.champion or "none")
    try:
        write_card(name, version, root, verdict)
    except (MlflowException, OSError, ValueError) as exc:
        log.warning("model card for %s v%s not written: %s", name, version, exc)
    # the decision last: whoever sees it (the UI, a waiting script) sees the card as well
    registry.set_version_tag(name, version, GATE_TAG, outcome)
    if registry.version_tags(name, version).get(REQUEST_TAG) == REQUESTED:
        why = next((r for r in fails if r.startswith("FAIL")), fails[0] if fails else "")
        answer = PASSED if outcome == PASSED else f"{REFUSED}: {why}"[:500]
        registry.set_version_tag(name, version, REQUEST_TAG, answer)


def write_card(name: str, version: str, root: Path | str | None, verdict: Verdict) -> str:
    """Render the card into the version's Description and log card.html (+ plots) on its run.

    Args:
        name: registered model; version: the version.
        root: the project it was gated on.
        verdict: the gate's outcome for it.

    Returns:
        The markdown written to the Description.
    """
    card = render_card(name, version, root, verdict)
    mlc = registry.client()
    registry.with_retries(
        lambda: mlc.update_model_version(name, version, description=card.markdown)
    )
    run_id = registry.with_retries(lambda: mlc.get_model_version(name, version)).run_id
    if run_id:
        with tempfile.TemporaryDirectory(prefix="tuneline-card-") as tmp:
            folder = Path(tmp) / CARD_DIR
            folder.mkdir()
            (folder / "card.html").write_text(card.html, encoding="utf-8")
            (folder / "card.md").write_text(card.markdown, encoding="utf-8")
            for title, data in card.plots.items():
                (folder / title).write_bytes(data)
            registry.with_retries(lambda: mlc.log_artifacts(run_id, str(folder), CARD_DIR))
    return card.markdown
