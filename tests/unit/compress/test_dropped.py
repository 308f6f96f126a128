"""Dropped candidates (a parity breach, a collapsed class) are logged, shown and passed over;
the run fails only when nothing is left to serve (tasks/compress/task.py), and the search only
gives smaller structures the parent's best pairs (tasks/compress/build.py _kept).

A Search is built by hand with made-up scores; MLflow is a client that records its calls."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tasks.compress import track as T
from tasks.compress.build import _kept
from tasks.compress.candidates import Candidate, Search
from tasks.compress.specs import PAIRS, PARENT, STRUCTURES, BuildContext, candidate_name
from tasks.compress.task import VariantRef, choose_candidate, track_candidates
from tests.params import params
from tuneline.config import Params
from tuneline.errors import CompressionError

pytestmark = pytest.mark.unit

REFERENCE = {"accuracy": 0.95, "macro_f1": 0.93, "recall_ham": 0.96, "recall_spam": 0.90}
PARITY_BREACH = "parity: parent_int8_dynamic_ort: agreement 0.9000 < min 0.9700"
COLLAPSE = "collapsed: recall_spam 0.000 < gate.min_class_recall 0.1"


class Recorder:
    """The MlflowClient calls compression makes, recorded; runs are numbered r1, r2, ..."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.runs: dict[str, dict[str, Any]] = {}

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> Any:
        run_id = f"r{len(self.runs) + 1}"
        self.runs[run_id] = {"name": run_name, "tags": dict(tags)}
        self.calls.append(("create_run", run_id, run_name))
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id))

    def log_batch(self, run_id: str, metrics: list[Any], params: list[Any]) -> None:
        self.runs[run_id]["metrics"] = {m.key: m.value for m in metrics}
        self.runs[run_id]["params"] = {p.key: p.value for p in params}

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str) -> None:
        self.calls.append(("log_artifacts", run_id, local_dir, artifact_path))

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str) -> None:
        self.calls.append(("log_artifact", run_id, Path(local_path).name, artifact_path))

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.calls.append(("set_tag", run_id, key, value))

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> None:
        self.calls.append(("set_terminated", run_id, status))


def scores(acc: float = 0.95, tput: float = 100.0, p95: float = 5.0, spam: float = 0.9):
    return {
        "accuracy": acc,
        "macro_f1": acc,
        "recall_ham": 0.96,
        "recall_spam": spam,
        "latency_p95_ms": p95,
        "throughput": tput,
        "size_mb": 10.0,
    }


def candidate(
    root: Path, structure: str, pair_key: str, dropped: str | None = None, **score: float
) -> Candidate:
    pair = next(p for p in PAIRS if p.key == pair_key)
    name = candidate_name(structure, pair)
    target = root / name
    if dropped is None:  # a dropped candidate's directory is removed by the search
        target.mkdir(parents=True)
        (target / "model.onnx").write_bytes(b"onnx")
    return Candidate(
        name=name,
        structure=structure,
        precision=pair.precision,
        runtime=pair.runtime,
        method=f"finetuned+{pair.precision}",
        dir=target,
        settings={"opset": 18},
        parity={"agreement": 0.9 if dropped else 1.0, "max_abs_logit": 0.5, "rows": 80.0},
        scores=scores(**score),
        fusions={"Attention": 2},
        lost=[],
        use_gpu=pair.use_gpu,
        dropped=dropped,
    )


def ref(c: Candidate) -> VariantRef:
    return VariantRef(c.name, c.method, str(c.dir), f"run-{c.name}", c.scores, c.parity, c.runtime)


@pytest.fixture
def smoke() -> Params:
    return params("smoke")


@pytest.fixture
def plots(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """plot_pareto recorded (and its file written) instead of drawn."""
    calls: list[dict[str, Any]] = []

    def plot(scores: Any, chosen: str, path: Path, front: set[str], objective: str) -> None:
        calls.append({"scores": dict(scores), "chosen": chosen, "front": set(front)})
        Path(path).write_bytes(b"png")

    monkeypatch.setattr(T, "plot_pareto", plot)
    return calls


@pytest.mark.parametrize("created", [True, False])
def test_a_candidate_dropped_for_parity_is_passed_over_and_shown(
    tmp_path: Path, smoke: Params, plots: list[dict[str, Any]], created: bool
):
    passing = candidate(tmp_path, PARENT, "fp32_ort", tput=100.0)
    # the dropped one is faster and as accurate: only its parity keeps it out
    breach = candidate(tmp_path, PARENT, "int8_dynamic_ort", PARITY_BREACH, tput=900.0)
    search = Search(REFERENCE, [passing, breach])
    client = Recorder()
    parent = T.ParentRun(client, "p1", "0", created)

    result = choose_candidate(search, [ref(passing)], smoke, tmp_path, parent)

    assert result.chosen == ref(passing)
    assert result.variants == (ref(passing),)
    assert result.rejected[breach.name] == PARITY_BREACH
    row = next(line for line in result.pareto_md.splitlines() if f"| {breach.name} |" in line)
    assert PARITY_BREACH in row and "| yes |" not in row
    assert result.pareto_md in (tmp_path / "pareto.md").read_text("utf-8")
    selection = json.loads((tmp_path / "selection.json").read_text("utf-8"))
    assert selection["chosen"] == passing.name and selection["chosen_dir"] == str(passing.dir)
    assert selection["rejected"][breach.name] == PARITY_BREACH
    # the plot shows what may be served, the dropped one not even as a point
    drawn = {"scores": {passing.name: passing.scores}, "chosen": passing.name}
    assert plots == [{**drawn, "front": {passing.name}}]
    logged = [c[2] for c in client.calls if c[0] == "log_artifact"]
    assert logged == ["pareto.md", "pareto.png", "selection.json"]
    assert ("set_tag", "p1", "tuneline.chosen_variant", passing.name) in client.calls
    assert (
        "set_tag",
        "p1",
        "tuneline.chosen_variant_run_id",
        f"run-{passing.name}",
    ) in client.calls
    ended = [c for c in client.calls if c[0] == "set_terminated"]
    assert ended == ([("set_terminated", "p1", "FINISHED")] if created else [])


@pytest.mark.parametrize("created", [True, False])
def test_nothing_servable_raises_with_every_reason_and_fails_the_parent(
    tmp_path: Path, smoke: Params, plots: list[dict[str, Any]], created: bool
):
    breach = candidate(tmp_path, PARENT, "int8_dynamic_ort", PARITY_BREACH)
    collapsed = candidate(tmp_path, PARENT, "fp32_ov", COLLAPSE, spam=0.0)
    inaccurate = candidate(tmp_path, PARENT, "fp32_ort", acc=0.5)  # passed parity, not budget
    search = Search(
        REFERENCE,
        [breach, collapsed, inaccurate],
        failed={"parent_int8_static_ort": "build failed: RuntimeError: calibration"},
        skipped={"parent_bf16_ov": "skipped: this CPU has no BF16 compute"},
    )
    client = Recorder()
    parent = T.ParentRun(client, "p1", "0", created)

    with pytest.raises(CompressionError) as err:
        choose_candidate(search, [ref(inaccurate)], smoke, tmp_path, parent)

    reasons = err.value.reasons
    assert f"{breach.name}: {PARITY_BREACH}" in reasons
    assert f"{collapsed.name}: {COLLAPSE}" in reasons
    assert "parent_int8_static_ort: build failed: RuntimeError: calibration" in reasons
    assert "parent_bf16_ov: skipped: this CPU has no BF16 compute" in reasons
    outside = [r for r in reasons if r.startswith(f"{inaccurate.name}: outside budget")]
    assert len(outside) == 1 and "accuracy 0.5000" in outside[0]
    assert all(reason in str(err.value) for reason in reasons)
    ended = [("set_terminated", "p1", "FAILED")] if created else []  # not ours to end otherwise
    assert client.calls == [("set_tag", "p1", "tuneline.compress", "failed"), *ended]
    assert plots == [] and not (tmp_path / "pareto.md").exists()


def test_every_candidate_dropped_names_each_one(tmp_path: Path, smoke: Params):
    gone = [
        candidate(tmp_path, PARENT, "fp32_ort", COLLAPSE, spam=0.0),
        candidate(tmp_path, PARENT, "int8_dynamic_ort", PARITY_BREACH),
    ]
    client = Recorder()
    with pytest.raises(CompressionError) as err:
        choose_candidate(
            Search(REFERENCE, gone), [], smoke, tmp_path, T.ParentRun(client, "p", "0", True)
        )
    assert "no candidate passed parity" in err.value.reasons
    assert [f"{c.name}: {c.dropped}" for c in gone] == err.value.reasons[1:]
    assert client.calls[0] == ("set_tag", "p", "tuneline.compress", "failed")


def test_track_logs_dropped_candidates_failed_without_artifacts(tmp_path: Path):
    long_reason = PARITY_BREACH + " x" * 400
    built = [
        candidate(tmp_path, PARENT, "fp32_ort"),
        candidate(tmp_path, PARENT, "int8_static_ov", long_reason),
        candidate(tmp_path, "distilled", "fp32_ort", COLLAPSE, spam=0.0),
        candidate(tmp_path, "distilled", "int8_dynamic_ort"),
    ]
    client = Recorder()
    parent = T.ParentRun(client, "p1", "exp", False)

    refs = track_candidates(Search(REFERENCE, built), parent, {"git_commit": "abc"})

    passing = [c for c in built if c.dropped is None]
    assert [r.name for r in refs] == [c.name for c in passing]
    run_of = {info["name"]: run_id for run_id, info in client.runs.items()}
    assert list(run_of) == [c.name for c in built]  # one child run each, dropped ones too
    for c in built:
        run_id, info = run_of[c.name], client.runs[run_of[c.name]]
        assert info["tags"]["mlflow.parentRunId"] == "p1"
        assert info["tags"]["tuneline.git_commit"] == "abc"
        assert info["params"]["runtime"] == c.runtime and info["params"]["structure"] == c.structure
        assert info["metrics"]["parity_agreement"] == c.parity["agreement"]
        artifacts = [call for call in client.calls if call[:2] == ("log_artifacts", run_id)]
        ended = [call[2] for call in client.calls if call[:2] == ("set_terminated", run_id)]
        if c.dropped:
            assert artifacts == [] and ended == ["FAILED"]
            assert c.dropped.startswith(info["tags"]["tuneline.dropped"])
            assert len(info["tags"]["tuneline.dropped"]) <= 500
        else:
            assert artifacts == [("log_artifacts", run_id, str(c.dir), "onnx")]
            assert ended == ["FINISHED"] and "tuneline.dropped" not in info["tags"]
    by_name = {r.name: r for r in refs}
    for c in passing:
        assert by_name[c.name] == VariantRef(
            c.name, c.method, str(c.dir), run_of[c.name], c.scores, c.parity, c.runtime
        )


def context(tmp_path: Path, settings: Params) -> BuildContext:
    """What _kept reads of a build context: its params (nothing is built)."""
    return BuildContext(
        model_dir=tmp_path,
        teacher=None,
        tokenizer=None,
        params=settings,
        labels=["ham", "spam"],
        train=([], []),
        val=([], []),
        test=([], []),
        output_dir=tmp_path,
        work=tmp_path / ".work",
    )


def parent_search(tmp_path: Path) -> Search:
    """The parent over every pair: six scored (one outside the budget, one dropped), fp16 failed."""
    built = [
        candidate(tmp_path, PARENT, "fp32_ort", tput=100.0, p95=9.0),
        candidate(tmp_path, PARENT, "fp32_ov", tput=150.0, p95=8.0),
        candidate(tmp_path, PARENT, "bf16_ov", tput=400.0, p95=4.0),
        candidate(tmp_path, PARENT, "int8_dynamic_ort", tput=300.0, p95=3.0),
        candidate(tmp_path, PARENT, "int8_static_ort", tput=250.0, p95=1.0, acc=0.5),
        candidate(tmp_path, PARENT, "int8_static_ov", PARITY_BREACH, tput=900.0, p95=0.5),
    ]
    return Search(REFERENCE, built, failed={"parent_fp16_ort": "build failed: CUDA"})


DISTILLED = next(s for s in STRUCTURES if s.name == "distilled")


@pytest.mark.parametrize(
    ("objective", "keep", "kept"),
    [
        ("throughput", 2, {"bf16_ov", "int8_dynamic_ort"}),
        ("throughput", 1, {"bf16_ov"}),
        ("throughput", 3, {"bf16_ov", "int8_dynamic_ort", "fp32_ov"}),
        ("latency", 2, {"int8_dynamic_ort", "bf16_ov"}),
        ("latency", 1, {"int8_dynamic_ort"}),
    ],
)
def test_a_smaller_structure_gets_only_the_parents_fastest_pairs_inside_the_budget(
    tmp_path: Path, objective: str, keep: int, kept: set[str]
):
    settings = params("smoke", **{"compress.objective": objective, "compress.search_keep": keep})
    search = parent_search(tmp_path)

    todo = _kept(context(tmp_path, settings), search, list(PAIRS), DISTILLED)

    assert [p.key for p in todo] == [p.key for p in PAIRS if p.key in kept]  # table order
    assert set(search.skipped) == {f"distilled_{p.key}" for p in PAIRS if p.key not in kept}
    key = "throughput" if objective == "throughput" else "latency_p95_ms"
    figures = {c.name: c.scores[key] for c in search.passed}
    for pair in PAIRS:
        if pair.key in kept:
            continue
        why, parent_name = search.skipped[f"distilled_{pair.key}"], f"parent_{pair.key}"
        assert parent_name in why, why
        if parent_name in figures:  # measured on the parent, and slower
            assert why.startswith("dominated") and key in why
            assert f"{figures[parent_name]:.1f}" in why, why
        else:  # never passed on the parent: not tried, and not called dominated
            assert why.startswith("skipped:") and "did not pass" in why, why


def test_with_no_parent_inside_the_budget_a_smaller_structure_tries_every_pair(tmp_path: Path):
    search = Search(REFERENCE, [candidate(tmp_path, PARENT, "fp32_ort", acc=0.5)])
    todo = _kept(context(tmp_path, params("smoke")), search, list(PAIRS), DISTILLED)
    assert todo == list(PAIRS) and search.skipped == {}
