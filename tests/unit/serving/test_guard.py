"""The serving guards as plain ASGI apps: a scope, a scripted receive, a recording send.

No server: each test drives RequestGuard or RouteGuard directly and checks what was
answered, whether the wrapped app ran, and how much of the body the guard pulled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from serving.guard import Message, RequestGuard, RouteGuard, Scope, routed_paths

pytestmark = pytest.mark.unit

TOKEN = "s3cret"
CHUNK = 64 * 1024


class App:
    """The wrapped app: reads the whole body, answers 200 with it."""

    def __init__(self) -> None:
        self.calls = 0
        self.body = b""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.calls += 1
        while True:
            message = await receive()
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


class Upload:
    """A client's body as http.request messages; counts the bytes handed out."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = list(chunks)
        self.pulled = 0

    async def __call__(self) -> Message:
        if not self.chunks:
            return {"type": "http.disconnect"}
        chunk = self.chunks.pop(0)
        self.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}


def http_scope(
    path: str = "/predict", headers: Iterable[tuple[bytes, bytes]] = (), method: str = "POST"
) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"content-type", b"application/json"), *headers],
    }


def bearer(value: bytes) -> tuple[bytes, bytes]:
    return (b"authorization", b"Bearer " + value)


def call(app: Any, scope: Scope, upload: Upload | None = None) -> tuple[int, dict[str, Any]]:
    """Run one request; returns the status and the JSON body (empty if none)."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, upload or Upload([b"{}"]), send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body) if body else {}


@pytest.mark.parametrize(
    "given",
    [b"caf\xe9", "café".encode(), b"\xff\xfe\x00", "s3cret\u00e9".encode()],
    ids=["latin-1", "utf-8", "invalid-utf-8", "token-plus-non-ascii"],
)
def test_non_ascii_bearer_gets_401(given: bytes) -> None:
    app = App()
    status, body = call(RequestGuard(app, token=TOKEN), http_scope(headers=[bearer(given)]))
    assert (status, app.calls) == (401, 0)
    assert "bearer" in body["error"]


def test_non_ascii_token_accepts_its_utf8_bytes_only() -> None:
    token = "clé-ünïcode-🔑"
    guard = RequestGuard(app := App(), token=token)
    assert call(guard, http_scope(headers=[bearer(token.encode("utf-8"))]))[0] == 200
    assert app.calls == 1
    for wrong in (token.encode("utf-8")[:-1], "clé".encode("latin-1"), b"cl"):
        assert call(guard, http_scope(headers=[bearer(wrong)]))[0] == 401
    assert app.calls == 1


def test_chunked_body_over_cap_gets_413_before_the_app() -> None:
    cap = 10 * CHUNK
    upload = Upload([b"x" * CHUNK] * 100)  # no Content-Length: only counting can catch it
    app = App()
    status, body = call(RequestGuard(app, max_body_bytes=cap, token=""), http_scope(), upload)
    assert status == 413 and str(cap) in body["error"]
    assert app.calls == 0
    assert upload.pulled <= cap + CHUNK  # it stopped reading at the cap


def test_declared_length_over_cap_gets_413_unread() -> None:
    upload = Upload([b"x" * CHUNK])
    scope = http_scope(headers=[(b"content-length", str(CHUNK).encode())])
    app = App()
    assert call(RequestGuard(app, max_body_bytes=CHUNK - 1, token=""), scope, upload)[0] == 413
    assert (app.calls, upload.pulled) == (0, 0)


@pytest.mark.parametrize("n_chunks", [0, 1, 7])
def test_body_under_cap_reaches_the_app_whole(n_chunks: int) -> None:
    chunks = [bytes([65 + i]) * 1000 for i in range(n_chunks)] or [b""]
    app = App()
    guard = RequestGuard(app, max_body_bytes=7000, token="")
    assert call(guard, http_scope(), Upload(chunks))[0] == 200
    assert app.body == b"".join(chunks) and app.calls == 1


def test_client_gone_mid_body_calls_nothing() -> None:
    messages: list[Message] = [
        {"type": "http.request", "body": b"x" * CHUNK, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    app = App()
    asyncio.run(RequestGuard(app, token="")(http_scope(), receive, send))
    assert app.calls == 0 and sent == [] and messages == []


def test_oversized_headers_get_431_before_the_app() -> None:
    app = App()
    guard = RouteGuard(app, is_routed=lambda path: True, max_header_bytes=1024)
    small = http_scope(headers=[(b"x-pad", b"a" * 900)])
    assert call(guard, small)[0] == 200
    status, body = call(guard, http_scope(headers=[(b"x-pad", b"a" * 1024)]))
    assert status == 431 and "1024" in body["error"]
    many = http_scope(headers=[(f"x-{i}".encode(), b"a" * 40) for i in range(40)])
    assert call(guard, many)[0] == 431  # the total counts, not each header
    assert app.calls == 1


def test_unknown_path_gets_404_before_the_app() -> None:
    app = App()
    guard = RouteGuard(app, is_routed={"/predict", "/livez"}.__contains__)
    status, body = call(guard, http_scope("/random-8c1f"))
    assert status == 404 and "/random-8c1f" in body["error"]
    assert app.calls == 0
    assert call(guard, http_scope("/predict"))[0] == 200
    assert app.calls == 1


def test_route_guard_passes_lifespan_and_closes_unknown_websockets() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    guard = RouteGuard(app, is_routed={"/ws"}.__contains__)
    asyncio.run(guard({"type": "lifespan"}, Upload([]), send))
    asyncio.run(guard({"type": "websocket", "path": "/elsewhere", "headers": []}, Upload([]), send))
    assert seen == ["lifespan"]
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_routed_paths_come_from_the_app_routes(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "a.css").write_text("a{}")

    async def ok(request: Any) -> Response:
        return Response()

    app = Starlette(
        routes=[
            Route("/predict", ok, methods=["POST"]),
            Route("/items/{item_id:int}", ok),
            Mount("/static", StaticFiles(directory=tmp_path)),
            Mount("/sub", Starlette()),
        ]
    )
    is_routed = routed_paths(app)
    for path in ("/predict", "/items/3", "/static/css/a.css", "/sub/anything"):
        assert is_routed(path), path
    for path in ("/", "/predict/x", "/items/x", "/static/css/b.css", "/static/", "/subx"):
        assert not is_routed(path), path
