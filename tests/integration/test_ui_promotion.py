"""Promotion from the MLflow UI, for real: `tuneline up` (MLflow server on SQLite, Prefect
server, the gate service), aliases set through MLflow's REST API exactly as the UI's alias
editor sends them (POST ajax-api/2.0/mlflow/registered-models/alias), the webhook, the
Prefect promotion deployment, the gate, a Bento built and smoke-tested, the tags and model
card read back through the API, and a hand-set @champion moved back.

Slow (several minutes on 2 cores: three servers, a Bento build and serve): `make test` skips
it; run it with `pytest -m slow tests/integration/test_ui_promotion.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.release.register import register_variant
from tests.helpers_serving import build_variant, make_project
from tuneline import registry
from tuneline.config import load_params, set_params
from tuneline.decisions import GATE_TAG, OVERRIDE_TAG, REASONS_TAG
from tuneline.services import MLFLOW_PORT, PREFECT_PORT

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
MLFLOW = f"http://127.0.0.1:{MLFLOW_PORT}"
PREFECT = f"http://127.0.0.1:{PREFECT_PORT}/api"


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (got := probe()) is not None and got is not False:
            return got
        time.sleep(3)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what}")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("ui")
    home, root = base / "home", base / "project"
    env = {
        **os.environ,
        "TUNELINE_HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),
        "BENTOML_HOME": str(home / "bentoml"),
    }
    env.pop("PREFECT_API_URL", None)
    env.pop("TUNELINE_MLFLOW_TRACKING_URI", None)
    with pytest.MonkeyPatch.context() as mp:
        for key in ("TUNELINE_HOME", "PREFECT_HOME", "BENTOML_HOME"):
            mp.setenv(key, env[key])
        mp.delenv("TUNELINE_MLFLOW_TRACKING_URI", raising=False)
        make_project(root)  # DVC-committed splits
        shutil.copy2(REPO / "params.yaml", root / "params.yaml")
        shutil.copytree(REPO / "configs", root / "configs")
        set_params(root, {"base.profile": "smoke"})
        params = load_params(root)
        good = build_variant(root, base / "good", params, shuffle=False, steps=30)
        bad = build_variant(root, base / "bad", params, shuffle=True, steps=30)
        # the fine-tune run the candidate comes from (training itself is test_end_to_end's)
        mlc = registry.client()
        finetune = mlc.create_run(registry.experiment_id("tuneline"), tags={"step": "finetune"})
        versions = {}
        for key, variant, ft in (("good", good, finetune.info.run_id), ("bad", bad, None)):
            versions[key] = register_variant.fn(
                str(variant),
                params=params,
                finetune_run_id=ft,
                variant_run_id=f"var-{key}",
                project_root=root,
            ).version
        versions["hand"] = register_variant.fn(
            str(good),
            params=params,
            finetune_run_id=None,
            variant_run_id="var-hand",
            project_root=root,
        ).version
        cli = [sys.executable, "-m", "flows.cli"]
        up = subprocess.run(
            [*cli, "up", "--root", str(root), "--timeout", "400"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        try:
            assert up.returncode == 0, up.stdout + up.stderr
            assert "gate" in up.stdout, up.stdout
            yield {
                "root": root,
                "home": home,
                "name": params.gate.registered_model,
                "versions": versions,
                "finetune_run": finetune.info.run_id,
            }
        finally:
            down = subprocess.run(
                [*cli, "down", "--root", str(root)],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            print(down.stdout, down.stderr)
            for log in sorted((home / "services").glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-6000:]}")


def set_alias_as_the_ui_does(name: str, alias: str, version: str) -> None:
    """The alias editor on the version page: POST ajax-api/.../registered-models/alias."""
    resp = httpx.post(
        f"{MLFLOW}/ajax-api/2.0/mlflow/registered-models/alias",
        json={"name": name, "alias": alias, "version": version},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text


def version_info(name: str, version: str) -> dict[str, Any]:
    resp = httpx.get(
        f"{MLFLOW}/api/2.0/mlflow/model-versions/get",
        params={"name": name, "version": version},
        timeout=30,
    )
    resp.raise_for_status()
    mv = resp.json()["model_version"]
    mv["tags"] = {t["key"]: t["value"] for t in mv.get("tags", [])}
    mv["aliases"] = mv.get("aliases", [])
    mv.setdefault("description", "")  # the API leaves out an empty one
    return dict(mv)


def decided(name: str, version: str) -> dict[str, Any] | None:
    mv = version_info(name, version)
    return mv if mv["tags"].get(GATE_TAG) in ("passed", "refused") else None


def test_challenger_from_the_ui_runs_the_gate_and_a_better_candidate_becomes_champion(
    ui: dict[str, Any],
) -> None:
    name, good = ui["name"], ui["versions"]["good"]
    set_alias_as_the_ui_does(name, "challenger", good)
    mv = wait_for(f"v{good} decided", lambda: decided(name, good), 1500)
    assert mv["tags"][GATE_TAG] == "passed", mv["tags"].get(REASONS_TAG)
    wait_for("champion moved", lambda: "champion" in version_info(name, good)["aliases"], 120)
    # the run came from the Prefect deployment the receiver started
    runs = httpx.post(
        f"{PREFECT}/flow_runs/filter",
        json={"deployments": {"name": {"any_": ["ui-promotion"]}}},
        timeout=30,
    ).json()
    assert any(r["state_type"] == "COMPLETED" for r in runs), [r["state_type"] for r in runs]
    # the model card is the Description, read back through the API
    card = version_info(name, good)["description"]
    assert card.startswith(f"# Model card: {name} v{good}"), card[:300]
    for part in ("## Gate: **passed**", "## Data", "md5 (dvc.lock)", "## Compression"):
        assert part in card, part


def test_a_worse_candidate_is_refused_with_its_reasons_on_its_tags(ui: dict[str, Any]) -> None:
    name, good, bad = ui["name"], ui["versions"]["good"], ui["versions"]["bad"]
    if "champion" not in version_info(name, good)["aliases"]:
        pytest.skip("needs the champion of the test above")
    set_alias_as_the_ui_does(name, "challenger", bad)
    mv = wait_for(f"v{bad} decided", lambda: decided(name, bad), 900)
    assert mv["tags"][GATE_TAG] == "refused"
    assert mv["tags"][REASONS_TAG].startswith("FAIL"), mv["tags"][REASONS_TAG]
    assert mv["tags"]["tuneline.gate.champion"] == good
    assert "## Gate: **refused**" in mv["description"]
    assert "champion" in version_info(name, good)["aliases"]  # the champion stays


def test_a_hand_set_champion_on_an_ungated_version_is_moved_back_and_audited(
    ui: dict[str, Any],
) -> None:
    name, good, hand = ui["name"], ui["versions"]["good"], ui["versions"]["hand"]
    if "champion" not in version_info(name, good)["aliases"]:
        pytest.skip("needs the champion of the first test")
    set_alias_as_the_ui_does(name, "champion", hand)
    wait_for("champion moved back", lambda: "champion" in version_info(name, good)["aliases"], 120)
    assert version_info(name, hand)["tags"][OVERRIDE_TAG].startswith("reverted")
    trail = ui["home"] / "audit" / "decisions.jsonl"
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    assert any(
        (r["event"], r["outcome"], r["version"]) == ("manual_override", "reverted", hand)
        for r in records
    )


def test_the_fine_tune_run_has_its_datasets(ui: dict[str, Any]) -> None:
    resp = httpx.get(
        f"{MLFLOW}/api/2.0/mlflow/runs/get", params={"run_id": ui["finetune_run"]}, timeout=30
    )
    inputs = resp.json()["run"]["inputs"]["dataset_inputs"]
    lock = (ui["root"] / "dvc.lock").read_text()
    got = {i["dataset"]["name"]: i["dataset"] for i in inputs}
    assert set(got) == {"train", "val", "test"}
    for split, dataset in got.items():
        assert dataset["digest"] in lock and f"data/prepared/{split}.parquet" in dataset["source"]


def test_the_receiver_refuses_forged_and_unknown_events(ui: dict[str, Any]) -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    name = ui["name"]
    port = load_params(ui["root"]).gate.webhook_port
    url = f"http://127.0.0.1:{port}/webhook"
    body = json.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "timestamp": "x",
            "data": {"name": name, "alias": "challenger", "version": "999"},
        }
    )
    stamp = str(int(time.time()))
    headers = {"X-MLflow-Delivery-Id": "d1", "X-MLflow-Timestamp": stamp}
    forged = {**headers, "X-MLflow-Signature": _generate_hmac_signature("x", "d1", stamp, body)}
    assert httpx.post(url, content=body, headers=forged, timeout=10).status_code == 401
    secret = (ui["home"] / "services" / "webhook.secret").read_text().strip()
    signed = {**headers, "X-MLflow-Signature": _generate_hmac_signature(secret, "d1", stamp, body)}
    assert httpx.post(url, content=body, headers=signed, timeout=10).status_code == 404
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
