"""The webhook receiver (tuneline/webhooks.py) on a real loopback socket: MLflow's own signing
code signs the deliveries, so a change in MLflow's scheme fails here first."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from tuneline.webhooks import Request, classify, serve_receiver, verify

pytestmark = pytest.mark.unit

SECRET = "s3cret-for-tests"
MODEL = "tuneline-classifier"


def delivery(data: dict[str, Any], entity: str, action: str, **overrides: str) -> dict[str, Any]:
    """Body and headers exactly as mlflow.webhooks.delivery sends them."""
    body = json.dumps({"entity": entity, "action": action, "timestamp": "x", "data": data})
    delivery_id, stamp = str(uuid.uuid4()), str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": _generate_hmac_signature(SECRET, delivery_id, stamp, body),
        **overrides,
    }
    return {"content": body.encode(), "headers": headers}


def alias(version: str, name: str = "challenger", model: str = MODEL) -> dict[str, Any]:
    data = {"name": model, "alias": name, "version": version}
    return delivery(data, "model_version_alias", "created")


def test_signatures_are_checked_like_mlflow_makes_them() -> None:
    sent = alias("1")
    headers, body = sent["headers"], sent["content"]
    assert verify(SECRET, headers, body, time.time()) is None
    assert verify("other", headers, body, time.time()) == "bad signature"
    assert verify(SECRET, headers, body + b" ", time.time()) == "bad signature"
    assert "outside" in (verify(SECRET, headers, body, time.time() + 3600) or "")
    unsigned = {k: v for k, v in headers.items() if k != "X-MLflow-Signature"}
    assert "unsigned" in (verify(SECRET, unsigned, body, time.time()) or "")


def test_only_the_events_tuneline_acts_on_are_requests() -> None:
    def event(entity: str, action: str, **data: str) -> dict[str, Any]:
        return {"entity": entity, "action": action, "data": {"name": MODEL, **data}}

    got = classify(event("model_version_alias", "created", alias="challenger", version="3"))
    assert got == Request("promote", MODEL, "3", "@challenger set on v3")
    champion = classify(event("model_version_alias", "created", alias="champion", version="2"))
    assert champion is not None and champion.kind == "guard"
    tag = event("model_version_tag", "set", version="4", key="tuneline.promote", value="requested")
    assert classify(tag) == Request("promote", MODEL, "4", "tuneline.promote=requested on v4")
    for ignored in (
        event("model_version_alias", "created", alias="staging", version="1"),
        event("model_version_tag", "set", version="4", key="tuneline.promote", value="passed"),
        event("model_version_tag", "set", version="4", key="note", value="requested"),
        event("model_version", "created", version="5"),
        {"entity": "model_version_alias", "action": "created", "data": "not a dict"},
    ):
        assert classify(ignored) is None, ignored


def test_the_receiver_acts_on_signed_known_events_and_survives_the_rest() -> None:
    done: list[Request] = []
    handled = threading.Event()

    def on_request(request: Request) -> None:
        if request.version == "9":
            raise RuntimeError("a handler that fails")
        done.append(request)
        handled.set()

    def known(name: str, version: str) -> str | None:
        return (
            None if name == MODEL and version in ("1", "2", "9") else f"unknown {name} v{version}"
        )

    receiver = serve_receiver(0, SECRET, known=known, on_request=on_request)
    url = f"http://127.0.0.1:{receiver.port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/health").status_code == 200
            bad = alias("1")
            bad["headers"]["X-MLflow-Signature"] = "v1,AAAA"
            assert http.post("/webhook", **bad).status_code == 401
            assert http.post("/webhook", content=b"{}").status_code == 401  # unsigned
            assert http.post("/webhook", **alias("1", name="staging")).status_code == 200
            refused = http.post("/webhook", **alias("7"))
            assert refused.status_code == 404 and "unknown" in refused.json()["message"]
            assert http.post("/webhook", **alias("1", model="someone-else")).status_code == 404
            assert http.post("/webhook", **alias("9")).status_code == 202  # its handler fails
            assert http.post("/webhook", **alias("2", name="champion")).status_code == 202
            assert handled.wait(10), "the receiver stopped after a failing handler"
            assert http.get("/health").status_code == 200
    finally:
        receiver.stop()
    assert done == [Request("guard", MODEL, "2", "@champion set on v2")]
