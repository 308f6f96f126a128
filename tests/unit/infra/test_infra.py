"""Deployment files agree with params.yaml (one source of settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tuneline.config import load_params

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.unit


def test_prefect_yaml_retraining_schedule_matches_params() -> None:
    spec = yaml.safe_load((REPO / "infra" / "prefect.yaml").read_text())
    retrain = load_params(REPO).retrain
    deployment = next(d for d in spec["deployments"] if d["name"] == retrain.deployment)
    assert deployment["schedules"][0]["cron"] == retrain.cron
    assert deployment["schedules"][0]["timezone"] == retrain.timezone
    module, func = deployment["entrypoint"].split(":")
    assert (REPO / module).exists() and f"def {func}(" in (REPO / module).read_text()


def test_services_bind_loopback_only() -> None:
    compose = yaml.safe_load((REPO / "infra" / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    assert load_params(REPO).serve.host == "127.0.0.1"
