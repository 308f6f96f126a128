"""The summary screen says when a rolled-back candidate was held instead of gated."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from tasks.release.promote import PromotionResult
from tuneline.summary import describe_release

pytestmark = pytest.mark.unit


def test_the_summary_says_the_candidate_was_held_and_the_champion_unchanged() -> None:
    variant = NS(name="fp32", method="export", metrics={"accuracy": 0.9, "latency_p95_ms": 2.0})
    reason = "version 4 was rolled back from on 2025-01-02T03:04:05+00:00; `tuneline promote 4`"
    released = PromotionResult("held", "m", "4", "1", "1", (reason,), "b:1")
    extra = describe_release(
        NS(run_id="r", budget="60 steps", metrics={}),
        NS(variants=(variant,), chosen=variant, rejected={}, pareto_md=""),
        released,
        NS(serve=NS(host="127.0.0.1", port=3000)),
    )
    assert extra["gate"] == f"held, not gated: {reason}"
    assert extra["champion"] == "m version 1 (bento b:1), unchanged"
