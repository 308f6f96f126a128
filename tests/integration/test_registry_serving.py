"""Registry -> gate -> Bento -> smoke -> @champion, for real: MLflow sqlite store, DVC-committed
splits, a Bento built and served over HTTP on 127.0.0.1, audit, rollback and racing promotions.

One module-scoped store: the first candidate is promoted, later tests build on that registry.
Every version a test needs comes from a module fixture, never from an earlier test, so each
test also passes alone (`pytest FILE::TEST`).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.release.gate import GateResult, gate_version
from tasks.release.package import package_version
from tasks.release.promote import PromotionResult, promote_version
from tasks.release.register import register_variant
from tasks.release.smoke import (
    SmokeResult,
    free_port,
    serve_bento,
    smoke_test_bento,
    wait_ready,
)
from tests.helpers_serving import build_variant, registry_project
from tuneline import audit, registry
from tuneline.config import Params

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
MODEL = "itest-classifier"
TOKEN = "itest-token"


class Env:
    """Everything the module's tests share."""

    def __init__(self, root: Path, params: Params) -> None:
        self.root = root
        self.params = params
        self.variants: dict[str, Path] = {}
        self.first: PromotionResult | None = None
        self.first_gate: GateResult | None = None
        self.bento_tag = ""
        self.versions: dict[str, str] = {}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("registry")
    # the project's own params (as the flow and CLI read them), pointed at a test model
    updates = {"gate.registered_model": MODEL, "serve.max_texts": 8}
    with registry_project(base, updates, token=TOKEN) as (root, params):
        state = Env(root, params)
        state.variants["good"] = build_variant(root, base / "good", params, shuffle=False, steps=30)
        state.variants["bad"] = build_variant(root, base / "bad", params, shuffle=True, steps=30)
        yield state


def register(env: Env, which: str, attempt: int = 1) -> str:
    return register_variant.fn(
        env.variants[which],
        params=env.params,
        finetune_run_id=f"ft-{which}-{attempt}",
        variant_run_id=f"var-{which}-{attempt}",
        project_root=env.root,
    ).version


@pytest.fixture(scope="module")
def promoted(env: Env) -> Env:
    """register -> gate -> package -> smoke -> promote the good candidate (no champion yet)."""
    version = register(env, "good")
    gate = gate_version.fn(MODEL, version, params=env.params, project_root=env.root)
    assert gate.decision.promote, gate.decision.reasons
    bento = package_version.fn(MODEL, version, params=env.params)
    smoke = smoke_test_bento.fn(bento, params=env.params, project_root=env.root)
    assert smoke.passed, smoke.reason
    env.first = promote_version.fn(gate, smoke)
    env.versions["first"] = version
    env.first_gate = gate
    env.bento_tag = bento.tag
    return env


@pytest.fixture(scope="module")
def bad_version(promoted: Env) -> str:
    """A worse candidate (trained on shuffled labels), registered after the first."""
    return register(promoted, "bad")


@pytest.fixture(scope="module")
def second_version(promoted: Env) -> str:
    """The good artifact registered again from another run: a new version, a tie with the first."""
    return register(promoted, "good", attempt=2)


@pytest.fixture(scope="module")
def server(promoted: Env) -> Iterator[str]:
    port = free_port()
    log = promoted.root / "serve.log"
    with serve_bento(promoted.bento_tag, port=port, log_path=log) as proc:
        base = f"http://127.0.0.1:{port}"
        assert wait_ready(base, proc, 120), log.read_text()[-3000:]
        yield base


def test_first_candidate_is_promoted_with_lineage(promoted: Env) -> None:
    result = promoted.first
    assert result is not None and result.outcome == "promoted", result
    assert registry.alias_version(MODEL, "champion") == result.version
    assert registry.alias_version(MODEL, "challenger") == result.version
    tags = registry.version_tags(MODEL, result.version)
    assert tags["finetune_run_id"] == "ft-good-1" and tags["variant_run_id"] == "var-good-1"
    assert tags["data_validation"] == "passed" and tags["parity_passed"] == "true"
    assert all(not tags[f"data_md5_{s}"].startswith("unlocked") for s in ("train", "val", "test"))
    assert "git_commit" in tags and tags["bento_tag"] == promoted.bento_tag
    assert any("no champion" in r for r in result.reasons)
    events = [(r["event"], r["outcome"]) for r in audit.read_audit()]
    assert ("gate", "passed") in events and ("promote", "promoted") in events
    # the registered files live under the settings' artifact root, not ./mlruns of the cwd
    from tuneline.settings import get_settings

    version = registry.client().get_model_version(MODEL, result.version)
    artifact_uri = registry.client().get_run(version.run_id).info.artifact_uri
    assert artifact_uri.startswith(get_settings().artifact_root.as_uri()), artifact_uri


def test_registry_holds_no_pickle(promoted: Env, tmp_path: Path) -> None:
    import mlflow.artifacts

    registry.client()
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}/1", dst_path=str(tmp_path)))
    names = {p.name for p in local.rglob("*") if p.is_file()}
    assert {"MLmodel", "model.onnx", "labels.json", "tokenizer.json"} <= names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".bin", ".pt", ".cloudpickle"))]
    mlmodel = (local / "MLmodel").read_text()
    assert "signature" in mlmodel and "input_ids" in mlmodel


def test_predict_returns_labels_and_probabilities(server: str) -> None:
    texts = ["win free cash prize now", "lunch meeting with the team tomorrow"]
    resp = httpx.post(
        f"{server}/predict",
        json={"texts": texts},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [p["label"] for p in body] == ["spam", "ham"]
    for pred in body:
        assert pred["label_id"] == ["ham", "spam"].index(pred["label"])
        assert sum(pred["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("content", "ctype", "auth", "expected"),
    [
        (json.dumps({"texts": []}), "application/json", True, 400),
        (json.dumps({"texts": ["x"] * 9}), "application/json", True, 400),
        (json.dumps({"texts": ["x" * 5001]}), "application/json", True, 400),
        (json.dumps({"text": "x"}), "application/json", True, 400),
        (json.dumps(["x"]), "application/json", True, 400),
        (json.dumps({"texts": [1, 2]}), "application/json", True, 400),
        ("{not json", "application/json", True, 400),
        (json.dumps({"texts": ["x"]}), "text/plain", True, 415),
        (json.dumps({"texts": ["x"]}), "application/vnd.bentoml+pickle", True, 415),
        (json.dumps({"texts": ["x"]}), "application/json", False, 401),
    ],
    ids=[
        "empty",
        "too-many",
        "too-long",
        "wrong-key",
        "not-object",
        "not-strings",
        "bad-json",
        "content-type",
        "pickle",
        "no-token",
    ],
)
def test_bad_requests_get_4xx_json(
    server: str, content: str, ctype: str, auth: bool, expected: int
) -> None:
    headers = {"Content-Type": ctype}
    if auth:
        headers["Authorization"] = f"Bearer {TOKEN}"
    resp = httpx.post(f"{server}/predict", content=content, headers=headers, timeout=30)
    assert resp.status_code == expected, resp.text
    assert "error" in json.dumps(resp.json())


def test_wrong_token_401_and_probes_open(server: str) -> None:
    bad = httpx.post(
        f"{server}/predict",
        json={"texts": ["x"]},
        headers={"Authorization": "Bearer nope"},
        timeout=30,
    )
    assert bad.status_code == 401
    for path in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(f"{server}{path}", timeout=10).status_code == 200


def test_metrics_expose_drift_and_batching(server: str) -> None:
    httpx.post(
        f"{server}/predict",
        json={"texts": ["win cash", "team lunch"]},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    ).raise_for_status()
    text = httpx.get(f"{server}/metrics", timeout=10).text
    for name in (
        "tuneline_input_length_chars_bucket",
        "tuneline_predicted_label_total",
        "bentoml_service_request_duration_seconds_bucket",
        "bentoml_service_adaptive_batch_size_bucket",
    ):
        assert name in text, name


def test_worse_candidate_refused_champion_unchanged(promoted: Env, bad_version: str) -> None:
    assert promoted.first is not None
    champion = promoted.first.version
    version = bad_version
    gate = gate_version.fn(MODEL, version, params=promoted.params, project_root=promoted.root)
    assert not gate.decision.promote
    assert any(r.startswith("FAIL McNemar") for r in gate.decision.reasons)
    result = promote_version.fn(gate, SmokeResult(False, "not run: gate refused", ""))
    assert result.outcome == "refused"
    assert registry.alias_version(MODEL, "champion") == champion
    audited = {(r["event"], r["version"], r["outcome"]) for r in audit.read_audit()}
    assert ("gate", champion, "passed") in audited and ("gate", version, "refused") in audited


def test_rollback_moves_champion_back(promoted: Env, second_version: str) -> None:
    from typer.testing import CliRunner

    assert promoted.first is not None
    first = promoted.first.version
    # the same artifact from another run: a new version, a tie, so the gate passes
    second = second_version
    assert second != first
    gate = gate_version.fn(MODEL, second, params=promoted.params, project_root=promoted.root)
    assert gate.decision.promote, gate.decision.reasons
    # Its Bento would be the one already smoke-tested (same model.onnx, same Bento version).
    result = promote_version.fn(gate, SmokeResult(True, "same artifact", promoted.bento_tag))
    assert result.outcome == "promoted" and registry.alias_version(MODEL, "champion") == second

    import typer

    from flows.cli_registry import register_cli

    app = typer.Typer()
    register_cli(app)

    args = ["rollback", "--root", str(promoted.root), "--profile", "smoke"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert registry.alias_version(MODEL, "champion") == first
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "nothing to roll back" in again.output
    assert registry.alias_version(MODEL, "champion") == first
    events = [(r["event"], r["outcome"]) for r in audit.read_audit()]
    assert ("rollback", "moved") in events and ("rollback", "nothing_to_roll_back") in events


def test_alias_moved_between_gate_and_set_loses_the_race(
    promoted: Env, bad_version: str, second_version: str
) -> None:
    first = registry.alias_version(MODEL, "champion")
    second = second_version
    gate = gate_version.fn(MODEL, second, params=promoted.params, project_root=promoted.root)
    assert gate.champion_version == first and gate.decision.promote
    other = bad_version
    registry.client().set_registered_model_alias(MODEL, "champion", other)  # someone else
    try:
        result = promote_version.fn(gate, SmokeResult(True, "same artifact", promoted.bento_tag))
        assert result.outcome == "lost_race"
        assert any("LOST THE RACE" in r for r in result.reasons)
        assert registry.alias_version(MODEL, "champion") == other
        assert audit.read_audit()[-1]["outcome"] == "lost_race"
    finally:
        registry.client().set_registered_model_alias(MODEL, "champion", first)


RACER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from tuneline import registry
    name, target, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    expected = registry.alias_version(name, "champion")
    Path(str(go) + "." + target).touch()
    deadline = time.monotonic() + 120
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    move = registry.move_champion(name, target, expected)
    print(json.dumps({"outcome": move.outcome, "target": target}))
    """
)


def test_two_processes_racing_move_champion_once(
    promoted: Env, bad_version: str, second_version: str, tmp_path: Path
) -> None:
    start = registry.alias_version(MODEL, "champion")
    targets = [bad_version, second_version]
    assert start not in targets
    go = tmp_path / "go"
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), MODEL, t, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ},
            start_new_session=True,
        )
        for t in targets
    ]
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not all(Path(f"{go}.{t}").exists() for t in targets):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.1)
        go.touch()  # both read the same champion; now both try to set it
        outs = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    outcomes = sorted(o["outcome"] for o in outs)
    assert outcomes == ["lost_race", "moved"], outs
    winner = next(o["target"] for o in outs if o["outcome"] == "moved")
    assert registry.alias_version(MODEL, "champion") == winner


def test_guard_answers_slow_requests_with_408() -> None:
    from serving.guard import RequestGuard

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(5)

    app = RequestGuard(slow_app, timeout_s=0.2, token="")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post("/predict", json={"texts": ["x"]})

    resp = asyncio.run(call())
    assert resp.status_code == 408 and "error" in resp.json()


def test_promotion_flow_refuses_then_promotes(
    promoted: Env, bad_version: str, second_version: str, prefect_harness: None
) -> None:
    from flows.promotion import promotion_flow
    from tuneline.errors import PromotionRefused

    bad, good = bad_version, second_version
    registry.client().set_registered_model_alias(MODEL, "champion", promoted.versions["first"])
    with pytest.raises(PromotionRefused) as refused:
        promotion_flow(bad, profile="smoke", project_root=str(promoted.root))
    assert any(r.startswith("FAIL") for r in refused.value.reasons)
    assert registry.alias_version(MODEL, "champion") == promoted.versions["first"]
    result = promotion_flow(good, profile="smoke", project_root=str(promoted.root))
    assert result.outcome == "promoted" and registry.alias_version(MODEL, "champion") == good
    assert any("Bento answered" in r for r in result.reasons)
