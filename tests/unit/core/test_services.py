"""tuneline.services and tuneline.prefect_server, without starting the real servers."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from tests.processes import wait_gone

pytestmark = pytest.mark.unit

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="psutil start times")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session of its own, as a `tuneline up` server is."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def record(home: Path, **fields: object) -> None:
    """Write services.json with one entry for `fields`."""
    from tuneline.services import Service, state_path

    service = Service("prefect", "http://127.0.0.1:1", "http://127.0.0.1:1/api/health", 0)
    path = state_path(home)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"prefect": dataclasses.asdict(service) | fields}))


def identity_of(proc: subprocess.Popen[bytes]) -> dict[str, object]:
    from tuneline.services import identity

    found = identity(proc.pid)
    assert found is not None
    return {"pid": proc.pid, "cmdline": list(found[0]), "create_time": found[1]}


@linux
@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param({"cmdline": ["mlflow", "server"]}, id="other-command-line"),
        pytest.param({"create_time": 1.0}, id="pid-reused-later"),
        pytest.param({"cmdline": [], "create_time": 0.0}, id="record-without-identity"),
    ],
)
def test_down_leaves_alone_a_pid_that_is_not_the_recorded_server(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], tamper: dict[str, object]
) -> None:
    from tuneline.services import running, state_path, stop

    record(tmp_path, **(identity_of(sleeper) | tamper))
    assert running(tmp_path) == {}
    outcome = stop(tmp_path)
    assert outcome["prefect"].startswith("not ours, left alone"), outcome
    assert str(sleeper.pid) in outcome["prefect"] and "sleep 300" in outcome["prefect"]
    assert sleeper.poll() is None, "down signalled a process it did not start"
    assert not state_path(tmp_path).exists()


@linux
def test_down_stops_the_recorded_server_and_its_group(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    from tuneline.services import stop

    record(tmp_path, **identity_of(sleeper))
    assert stop(tmp_path) == {"prefect": "stopped"}
    assert sleeper.wait(timeout=10) is not None
    assert not wait_gone(session=sleeper.pid, timeout_s=5)


def test_down_reports_a_server_already_gone(tmp_path: Path) -> None:
    from tuneline.services import stop

    proc = subprocess.Popen(["true"])
    proc.wait()
    record(tmp_path, pid=proc.pid, cmdline=["true"], create_time=1.0)
    assert stop(tmp_path) == {"prefect": "not running"}


# --- the Prefect server's Host and Origin check ----------------------------------------------


@pytest.fixture
def client() -> TestClient:
    from starlette.applications import Starlette
    from starlette.middleware.cors import CORSMiddleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, WebSocketRoute

    from tuneline.prefect_server import LocalOnly, allowed_origins

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    inner = Starlette(
        routes=[
            Route("/api/flows/filter", lambda r: PlainTextResponse("[]"), methods=["POST"]),
            WebSocketRoute("/api/events/out", ws),
        ]
    )
    # what Prefect builds from PREFECT_SERVER_CORS_ALLOWED_ORIGINS (see prefect_server.server_env)
    inner.add_middleware(
        CORSMiddleware, allow_origins=sorted(allowed_origins(4200)), allow_methods=["*"]
    )
    return TestClient(LocalOnly(inner, 4200), base_url="http://127.0.0.1:4200")


def test_prefect_api_answers_its_own_host_and_origin(client: TestClient) -> None:
    for host in ("127.0.0.1:4200", "localhost:4200"):
        origin = f"http://{host}"
        resp = client.post("/api/flows/filter", headers={"host": host, "origin": origin})
        assert resp.status_code == 200
        assert resp.headers["access-control-allow-origin"] == origin
    assert client.post("/api/flows/filter").status_code == 200  # no Origin: Prefect's client


@pytest.mark.parametrize(
    "headers",
    [
        {"host": "evil.example:4200"},  # DNS rebinding: the page's own name, our address
        {"host": "127.0.0.1:4201"},
        {"host": "127.0.0.1"},
        {"host": ""},
    ],
)
def test_prefect_api_refuses_other_hosts(client: TestClient, headers: dict[str, str]) -> None:
    resp = client.post("/api/flows/filter", headers=headers)
    assert resp.status_code == 400


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:4201"])
def test_prefect_api_refuses_cross_origin_requests(client: TestClient, origin: str) -> None:
    # a "simple" POST (text/plain) is sent by a browser without a preflight: CORS alone lets
    # it reach the API and only hides the answer
    resp = client.post(
        "/api/flows/filter", headers={"origin": origin, "content-type": "text/plain"}
    )
    assert resp.status_code == 403
    assert "access-control-allow-origin" not in resp.headers
    preflight = client.options(
        "/api/flows/filter",
        headers={"origin": origin, "access-control-request-method": "POST"},
    )
    assert preflight.status_code == 403


def test_prefect_websocket_refuses_other_origins(client: TestClient) -> None:
    from starlette.websockets import WebSocketDisconnect

    with client.websocket_connect("ws://127.0.0.1:4200/api/events/out") as ws:
        assert ws.receive_text() == "hi"
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect(
            "ws://127.0.0.1:4200/api/events/out", headers={"origin": "https://evil.example"}
        ),
    ):
        pass


def test_prefect_server_env_pins_cors_to_the_ui_origins() -> None:
    from tuneline.prefect_server import server_env

    env = server_env(4200, ephemeral=False)
    origins = env["PREFECT_SERVER_CORS_ALLOWED_ORIGINS"].split(",")
    assert sorted(origins) == ["http://127.0.0.1:4200", "http://localhost:4200"]
    assert env["PREFECT_SERVER_API_HOST"] == "127.0.0.1"
