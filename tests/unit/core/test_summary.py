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


def test_console_form_counts_what_it_does_not_name() -> None:
    """The console keeps a dropped candidate's reason and every failed check; the rest counted."""
    from tuneline.summary import brief_release

    rejected = {
        "a_int8_static_ort": "parity: max |delta logit| 3.66 > 3",
        "b_fp32_ort": "inside budget but slower: throughput 40 rows/s vs 90 rows/s",
        "c_fp32_ov": "dominated: as parent_fp32_ov it measured ...",
        "d_bf16_ov": "skipped: this CPU has no BF16 compute (AVX-512 BF16 / AMX)",
        "e_bf16_ov": "skipped: this CPU has no BF16 compute (AVX-512 BF16 / AMX)",
    }
    tuned = NS(
        budget="3 epoch(s) x 9 steps = 27 optimizer steps (auto, 5 rows); early stopping: "
        "after 4; ran 20 of 27 steps (early stopped), best model from checkpoint-20"
    )
    held = NS(outcome="held", reasons=("PASS a", "FAIL b"))
    refused = NS(outcome="refused", reasons=("PASS a", "PASS c", "FAIL accuracy 0.5 < 0.8"))
    lines = brief_release(tuned, NS(rejected=rejected), refused)
    assert lines["other candidates"].startswith("5: dropped a_int8_static_ort parity: max")
    assert "1 inside budget but slower; 1 dominated; 2 skipped" in lines["other candidates"]
    assert lines["gate"] == "refused: 2 checks passed | FAIL accuracy 0.5 < 0.8"
    assert lines["fine-tune budget"] == (
        "3 epoch(s) x 9 steps = 27 optimizer steps; ran 20 of 27 steps (early stopped), "
        "best model from checkpoint-20"
    )
    assert brief_release(tuned, NS(rejected={}), held)["gate"] == "held, not gated: PASS a | FAIL b"
    summary = PipelineSummary(
        {"train": "0123456789abcdef", "test": "fedcba9876543210"}, {"train": 9, "test": 3}, {}, {}
    ).with_extra({"gate": "promoted: PASS a | PASS b", "tuning": "not run"}, {"tuning": ""})
    brief, full = summary.render(brief=True), summary.render()
    assert "train 9 rows 01234567, test 3 rows fedcba98" in brief and "tuning" not in brief
    assert "0123456789abcdef" in full and "tuning: not run" in full
