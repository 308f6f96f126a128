"""The `serve --follow` proxy as an ASGI app between in-process ASGI apps: a client's httpx
talks to the proxy, the proxy's backends are small ASGI apps that record what reached them.
A switch while a request is inside the old backend loses nothing; the bounds answer before
any backend is asked."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.release.proxy import VERSION_HEADER, Backend, Proxy, body_cap
from tuneline.config import ServeParams, load_params

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


def serve_params(**overrides: Any) -> ServeParams:
    """The project's params.serve with small bounds."""
    small = {"max_texts": 2, "max_chars": 10, "timeout_s": 2, "max_header_bytes": 2048}
    small["bulk_max_bytes"] = 1000
    return load_params(REPO).serve.model_copy(update={**small, **overrides})


class Upstream:
    """A backend: records each request; answers 200 with its name, after `gate` if set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[dict[str, Any]] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append(
            {"path": scope["path"], "query": scope["query_string"], "headers": headers}
        )
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        status = 401 if headers.get("authorization") != "Bearer t0k" else 200
        payload = json.dumps({"served_by": self.name, "body": body.decode()}).encode()
        out = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})


def backend(app: Any, version: str) -> Backend:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b")
    return Backend(version, f"model:v{version}", "http://b", client)


def client(proxy: Proxy) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy), base_url="http://p")


AUTH = {"Authorization": "Bearer t0k"}


def test_forwards_path_query_body_and_token_and_names_the_version() -> None:
    async def scenario() -> None:
        up = Upstream("a")
        proxy = Proxy(serve_params())
        proxy.switch(backend(up, "3"))
        async with client(proxy) as c:
            resp = await c.post("/predict?x=1", json={"texts": ["hi"]}, headers=AUTH)
            refused = await c.post("/predict", json={"texts": ["hi"]})
        assert resp.status_code == 200 and resp.headers[VERSION_HEADER] == "3"
        assert resp.json() == {"served_by": "a", "body": '{"texts":["hi"]}'}
        assert "connection" not in resp.headers  # hop-by-hop, not passed back
        first = up.seen[0]
        assert first["path"] == "/predict" and first["query"] == b"x=1"
        assert first["headers"]["authorization"] == "Bearer t0k"
        assert first["headers"]["host"] == "b"  # the backend's, not the client's
        assert refused.status_code == 401  # the backend's answer, unchanged

    asyncio.run(scenario())


def test_bounds_answer_before_any_backend() -> None:
    async def scenario() -> None:
        up = Upstream("a")
        serve = serve_params()
        proxy = Proxy(serve)
        async with client(proxy) as c:
            none_yet = await c.get("/readyz")
            proxy.switch(backend(up, "1"))
            big_headers = await c.get("/readyz", headers={"x-pad": "p" * 4096})
            big_body = await c.post("/predict", content=b"x" * (body_cap(serve) + 1))

            async def stream() -> Any:  # no Content-Length: counted as it arrives
                for _ in range(body_cap(serve) // 1024 + 2):
                    yield b"y" * 1024

            big_stream = await c.post("/predict", content=stream())
        assert none_yet.status_code == 503 and "error" in none_yet.json()
        assert big_headers.status_code == 431 and "error" in big_headers.json()
        assert big_body.status_code == 413 and big_stream.status_code == 413
        assert up.seen == []

    asyncio.run(scenario())


def test_switch_keeps_the_request_in_the_old_backend_and_drain_waits_for_it() -> None:
    async def scenario() -> None:
        old, new = Upstream("old"), Upstream("new")
        old.gate = asyncio.Event()
        proxy = Proxy(serve_params())
        first = backend(old, "1")
        proxy.switch(first)
        async with client(proxy) as c:
            held = asyncio.create_task(c.post("/predict", json={}, headers=AUTH))
            await asyncio.wait_for(old.entered.wait(), 5)
            assert proxy.switch(backend(new, "2")) is first and first.in_flight == 1
            after = await c.post("/predict", json={}, headers=AUTH)
            assert not await proxy.drain(first, 0.2)  # still holding the first request
            draining = asyncio.create_task(proxy.drain(first, 5))
            old.gate.set()
            assert await draining and first.in_flight == 0
            held_resp = await held
        assert held_resp.status_code == 200 and held_resp.headers[VERSION_HEADER] == "1"
        assert after.status_code == 200 and after.headers[VERSION_HEADER] == "2"
        assert len(old.seen) == 1 and len(new.seen) == 1

    asyncio.run(scenario())


class FailOnce(httpx.AsyncBaseTransport):
    """Refuses the first connection (as a backend closing an idle keep-alive one does)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.refused:
            self.refused += 1
            raise httpx.RemoteProtocolError("Server disconnected without sending a response")
        return await self.inner.handle_async_request(request)


def test_a_dropped_connection_is_retried_once_then_502() -> None:
    async def scenario() -> None:
        up = Upstream("a")
        flaky = FailOnce(httpx.ASGITransport(app=up))
        proxy = Proxy(serve_params())
        flaky_client = httpx.AsyncClient(transport=flaky, base_url="http://b")
        proxy.switch(Backend("1", "m:v1", "http://b", flaky_client))
        async with client(proxy) as c:
            retried = await c.post("/predict", json={}, headers=AUTH)
            # a loopback port nobody listens on: the connection is refused, twice
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
            dead = httpx.AsyncClient(base_url=closed, timeout=2.0)
            proxy.switch(Backend("2", "m:v2", closed, dead))
            unreachable = await c.post("/predict", json={}, headers=AUTH)
        assert flaky.refused == 1 and retried.status_code == 200 and len(up.seen) == 1
        assert unreachable.status_code == 502 and "unreachable" in unreachable.json()["error"]

    asyncio.run(scenario())
