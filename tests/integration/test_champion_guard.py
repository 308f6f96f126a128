"""The gate's outcome on the version (tags, request tag, model card), the champion guard and
the runs' dataset inputs, on a real MLflow sqlite store. Versions are registered from a bare
source folder: nothing is trained, no Bento is built (tests/integration/test_ui_promotion.py
does it all through `tuneline up`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.release.card import DESCRIPTION_LIMIT, Verdict
from tasks.release.guard import guard_champion, ungated
from tasks.release.outcome import publish_outcome
from tests.helpers_serving import synthetic
from tests.params import section
from tuneline import audit, registry
from tuneline.decisions import GATE_TAG, OVERRIDE_TAG, REASONS_TAG, REQUEST_TAG
from tuneline.io import md5_file
from tuneline.lineage import PREPARED, log_datasets

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODEL = section("gate").registered_model  # `tuneline watch --root REPO` guards this one
POLICY = section("gate", allow_manual_champion=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("guard")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNELINE_HOME", str(base / "home"))
        mp.delenv("TUNELINE_MLFLOW_TRACKING_URI", raising=False)
        mlc = registry.client()
        mlc.create_registered_model(MODEL)
        source = base / "model"
        source.mkdir()
        versions = [str(mlc.create_model_version(MODEL, str(source)).version) for _ in range(4)]
        yield {"base": base, "versions": versions}


def set_champion_by_hand(version: str) -> None:
    """What the alias pencil on the version page does (no lock, no gate, no history)."""
    registry.client().set_registered_model_alias(MODEL, "champion", version)


def test_a_pass_is_written_to_tags_and_description(store: dict[str, Any]) -> None:
    v1 = store["versions"][0]
    reasons = ("PASS accuracy 0.9 >= floor 0.8", "PASS ONNX parity passed")
    publish_outcome(MODEL, v1, None, Verdict("passed", reasons, None, {"p95_latency_ms": 3.0}))
    assert registry.move_champion(MODEL, v1, expected=None).outcome == "moved"
    tags = registry.version_tags(MODEL, v1)
    assert tags[GATE_TAG] == "passed" and "PASS accuracy" in tags[REASONS_TAG]
    description = registry.client().get_model_version(MODEL, v1).description
    assert description.startswith(f"# Model card: {MODEL} v{v1}"), description
    assert "## Gate: **passed** (compared with champion none" in description
    assert len(description) <= DESCRIPTION_LIMIT
    assert ungated(MODEL, v1) is None


def test_a_refusal_answers_the_request_tag_with_its_reason(store: dict[str, Any]) -> None:
    v3 = store["versions"][2]
    registry.set_version_tag(MODEL, v3, REQUEST_TAG, "requested")
    reasons = ("PASS ONNX parity passed", "FAIL accuracy 0.41 >= floor 0.8")
    publish_outcome(MODEL, v3, None, Verdict("refused", reasons, "1"))
    tags = registry.version_tags(MODEL, v3)
    assert tags[GATE_TAG] == "refused"
    assert tags[REQUEST_TAG] == "refused: FAIL accuracy 0.41 >= floor 0.8"
    assert tags[REASONS_TAG].splitlines()[0].startswith("FAIL")  # the why comes first
    description = registry.client().get_model_version(MODEL, v3).description
    assert "## Gate: **refused** (compared with champion v1)" in description
    assert ungated(MODEL, v3) is not None


def gated_champion(version: str) -> None:
    """v1 as the gate leaves it (a test run alone has no earlier test to do it)."""
    if registry.version_tags(MODEL, version).get(GATE_TAG) != "passed":
        publish_outcome(MODEL, version, None, Verdict("passed", ("PASS",), None))
    if registry.alias_version(MODEL, "champion") != version:
        registry.move_champion(MODEL, version, registry.alias_version(MODEL, "champion"))


def test_a_hand_set_champion_is_moved_back_and_audited(store: dict[str, Any]) -> None:
    v1, v2 = store["versions"][:2]
    gated_champion(v1)
    before = len(audit.read_audit())
    set_champion_by_hand(v2)
    assert ungated(MODEL, v2) is not None  # what `tuneline serve` refuses without --force
    result = guard_champion(MODEL, POLICY)
    assert (result.outcome, result.champion) == ("reverted", v1)
    assert registry.alias_version(MODEL, "champion") == v1
    assert registry.version_tags(MODEL, v2)[OVERRIDE_TAG].startswith("reverted")
    records = audit.read_audit()[before:]
    assert [(r["event"], r["outcome"], r["version"]) for r in records] == [
        ("manual_override", "reverted", v2)
    ]
    assert guard_champion(MODEL, POLICY).outcome == "gated"  # the restored one passes


def test_allow_manual_champion_keeps_it_and_audits_once(store: dict[str, Any]) -> None:
    v4 = store["versions"][3]
    allow = section("gate", allow_manual_champion=True)
    before = len(audit.read_audit())
    set_champion_by_hand(v4)
    assert guard_champion(MODEL, allow).outcome == "allowed"
    assert guard_champion(MODEL, allow).outcome == "allowed"
    assert registry.alias_version(MODEL, "champion") == v4
    records = [r for r in audit.read_audit()[before:] if r["event"] == "manual_override"]
    assert [r["outcome"] for r in records] == ["allowed"]


def test_splits_are_logged_as_run_inputs_with_their_md5(store: dict[str, Any]) -> None:
    root = store["base"] / "project"
    (root / PREPARED).mkdir(parents=True)
    for split, seed in (("train", 1), ("val", 2), ("test", 3)):
        synthetic(20, seed).to_parquet(root / PREPARED / f"{split}.parquet", index=False)
    mlc = registry.client()
    run = mlc.create_run(registry.experiment_id("guard-inputs"))
    assert log_datasets(mlc, run.info.run_id, root) == 3
    inputs = mlc.get_run(run.info.run_id).inputs.dataset_inputs
    got = {i.dataset.name: i for i in inputs}
    assert set(got) == {"train", "val", "test"}
    for split, item in got.items():
        assert item.dataset.digest == md5_file(root / PREPARED / f"{split}.parquet")
        assert f"data/prepared/{split}.parquet" in item.dataset.source
        contexts = {t.key: t.value for t in item.tags}["mlflow.data.context"]
        assert contexts == {"train": "training", "val": "validation", "test": "testing"}[split]


@pytest.mark.slow  # a CLI process: ~50 s on the shared 2 cores
def test_watch_moves_a_hand_set_champion_back(store: dict[str, Any]) -> None:
    v1, v2 = store["versions"][:2]
    gated_champion(v1)
    set_champion_by_hand(v2)
    cmd = [sys.executable, "-m", "flows.cli", "watch", "--once", "--root", str(REPO)]
    proc = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"@champion v{v2} set outside the gate: reverted" in proc.stdout, proc.stdout
    assert registry.alias_version(MODEL, "champion") == v1


def test_the_card_reads_the_fine_tune_run_and_the_compression_search(
    store: dict[str, Any],
) -> None:
    """The runs as the pipeline leaves them: train.* params and test_* metrics on the fine-tune
    run, its confusion matrix, and the compression search's Pareto table and plot under
    compression/ (tasks/compress logs them on the fine-tune run, its parent)."""
    from mlflow.entities import Metric, Param

    mlc, tmp = registry.client(), store["base"] / "runs"
    (tmp / "compression").mkdir(parents=True)
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    (tmp / "confusion_matrix.png").write_bytes(png)
    (tmp / "compression" / "pareto.png").write_bytes(png)
    table = "| candidate | runtime | p95 ms (b1) |\n| --- | --- | ---: |\n"
    table += "| parent_fp32_ort | ort | 4.2 |"
    (tmp / "compression" / "pareto.md").write_text(f"# Compression: chosen `x`\n\n{table}\n")
    ft = mlc.create_run(registry.experiment_id("guard-finetune")).info.run_id
    now = 0
    mlc.log_batch(
        ft,
        metrics=[
            Metric(k, v, now, 0)
            for k, v in {"test_accuracy": 0.93, "test_recall_spam": 0.71}.items()
        ],
        params=[Param("train.model", "tiny-bert"), Param("train.learning_rate", "0.001")],
    )
    mlc.log_artifact(ft, str(tmp / "confusion_matrix.png"))
    mlc.log_artifacts(ft, str(tmp / "compression"), "compression")
    reg = mlc.create_run(registry.experiment_id("guard-registry")).info.run_id
    version = str(mlc.create_model_version(MODEL, str(tmp), run_id=reg).version)
    for key, value in {"finetune_run_id": ft, "runtime": "openvino", "variant_name": "x"}.items():
        registry.set_version_tag(MODEL, version, key, value)
    publish_outcome(MODEL, version, None, Verdict("passed", ("PASS all",), "1", {"size_mb": 3.5}))
    card = mlc.get_model_version(MODEL, version).description
    for part in (
        "| model | tiny-bert |",
        "| accuracy | 0.9300 |",
        "| spam | 0.7100 |",
        "| parent_fp32_ort | ort | 4.2 |",
        "| x | openvino |",
        "3.50",
    ):
        assert part in card, (part, card)
    html = Path(mlc.download_artifacts(reg, "model_card/card.html", str(tmp)))
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 2 and "<table>" in page
