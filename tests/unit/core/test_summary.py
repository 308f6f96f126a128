"""The summary screen says what a newcomer needs: data version, metrics, choice, gate, serving."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from tuneline.summary import PipelineSummary, describe_release

pytestmark = pytest.mark.unit


def test_summary_screen_names_everything() -> None:
    fp32 = NS(
        name="parent_fp32_ort",
        method="finetuned+fp32",
        metrics={"accuracy": 0.98, "latency_p95_ms": 9.0, "throughput": 100.0},
    )
    bf16 = NS(
        name="distilled_bf16_ov",
        method="kd_student+bf16",
        metrics={"accuracy": 0.98, "latency_p95_ms": 3.0, "throughput": 800.0},
    )
    compressed = NS(
        variants=(fp32, bf16),
        chosen=bf16,
        rejected={"parent_fp32_ort": "slower"},
        pareto_md="| v | p95 |",
    )
    released = NS(
        outcome="promoted", reasons=("PASS floors",), name="m", champion="4", bento_tag="b:1"
    )
    extra = describe_release(
        NS(
            run_id="run1",
            budget="3 epoch(s) x 170 steps",
            metrics={"accuracy": 0.985, "macro_f1": 0.96, "majority_baseline": 0.87},
        ),
        compressed,
        released,
        NS(serve=NS(host="127.0.0.1", port=3000)),
    )
    text = (
        PipelineSummary({"train": "abc"}, {"train": 10}, {"rows_in": 12}, {"prepare": True})
        .with_extra(extra)
        .render()
    )
    for needle in (
        "abc",
        "0.9850",
        "distilled_bf16_ov",
        "3.00x lower p95 and 8.00x the rows/s of parent_fp32_ort",
        "parent_fp32_ort: slower",
        "| v | p95 |",
        "promoted: PASS floors",
        "version 4",
        "mlflow ui",
        "curl",
        "stages run: prepare",
        "fine-tune budget: 3 epoch(s) x 170 steps",
    ):
        assert needle in text, needle
