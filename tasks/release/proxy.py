"""The reverse proxy `tuneline serve --follow` runs on serve.host:serve.port.

It forwards every request to the current backend (one Bento on a loopback port) and can be
pointed at another one at any moment (`switch`): requests already inside the old backend finish
there (`drain` waits for them), every later one goes to the new backend, so a switch fails no
request. The backend does the serving checks (bearer token, content type, schema, limits); the
proxy keeps its own bounds so it never buffers without limit: request headers over
serve.max_header_bytes get 431, a body over the backend's cap 413, a body not sent within
serve.timeout_s 408, and no backend (yet) 503, each with a JSON message. Authorization and
every other end-to-end header pass through unchanged; each answer carries the version that
served it in `x-tuneline-version`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx

from tuneline.config import ServeParams

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

VERSION_HEADER = "x-tuneline-version"
# RFC 9110 7.6.1 hop-by-hop headers, plus those the two connections set for themselves
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# A request that reached no backend (a keep-alive connection the backend had just closed, or
# a refused connect) is sent once more: every route a Bento has answers without side effects.
RETRIED = (httpx.ConnectError, httpx.RemoteProtocolError)


@dataclass
class Backend:
    """One served Bento behind the proxy: what it serves, where, and what it is doing."""

    version: str
    tag: str
    url: str
    client: httpx.AsyncClient
    proc: subprocess.Popen[bytes] | None = None
    in_flight: int = 0


def body_cap(serve: ServeParams) -> int:
    """The largest legal body of any route: a /bulk job's (serve.bulk_max_bytes), or /predict's
    (every text at max length, JSON-escaped: x6 for \\uXXXX, plus slack). serving/service.py
    caps each route's bodies exactly; this bound only keeps the proxy's buffer finite."""
    return max(serve.bulk_max_bytes, serve.max_texts * (serve.max_chars * 6 + 8) + 4096)


def upstream_timeout_s(serve: ServeParams) -> float:
    """How long one forwarded request may take: the Bento's own traffic timeout
    (serving/service.py: serve.timeout_s + 5; its guard answers 408 before that)."""
    return float(serve.timeout_s + 5)


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Proxy:
    """ASGI app forwarding HTTP requests to `current`.

    Args:
        serve: params.serve (header and body bounds, timeouts).
    """

    def __init__(self, serve: ServeParams) -> None:
        self.max_header_bytes = serve.max_header_bytes
        self.max_body_bytes = body_cap(serve)
        self.body_timeout_s = float(serve.timeout_s)
        self.current: Backend | None = None

    def switch(self, backend: Backend | None) -> Backend | None:
        """Send every request from now on to `backend`; returns the one it replaces.

        One assignment on the event loop's thread: a request picks its backend and counts
        itself in it (`in_flight`) without awaiting in between, so none is lost across it.
        """
        old, self.current = self.current, backend
        return old

    @staticmethod
    async def drain(backend: Backend, timeout_s: float) -> bool:
        """Wait until `backend` holds no request (at most `timeout_s`); whether it emptied."""
        deadline = time.monotonic() + timeout_s
        while backend.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return backend.in_flight == 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or ())
        if sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
            message = f"request headers over {self.max_header_bytes} bytes"
            await send_json(send, 431, {"error": message})
            return
        try:
            body = await asyncio.wait_for(self._body(headers, receive), self.body_timeout_s)
        except TimeoutError:
            await send_json(send, 408, {"error": f"body not sent in {self.body_timeout_s:g} s"})
            return
        if body is None:
            await send_json(send, 413, {"error": f"body over {self.max_body_bytes} bytes"})
            return
        backend = self.current
        if backend is None:
            await send_json(send, 503, {"error": "no model is being served yet"})
            return
        backend.in_flight += 1
        try:
            await self._forward(backend, scope, headers, body, send)
        finally:
            backend.in_flight -= 1

    async def _body(self, headers: list[tuple[bytes, bytes]], receive: Receive) -> bytes | None:
        """The request body, or None once it passes the cap (declared or sent)."""
        for name, value in headers:
            declared = name.lower() == b"content-length" and value.isdigit()
            if declared and int(value) > self.max_body_bytes:
                return None
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return bytes(body)
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                return None
            if not message.get("more_body"):
                return bytes(body)

    async def _forward(
        self,
        backend: Backend,
        scope: Scope,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        send: Send,
    ) -> None:
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        passed = [(k, v) for k, v in headers if k.lower().decode("latin-1") not in HOP_BY_HOP]
        request = backend.client.build_request(
            scope["method"], target.decode("latin-1"), headers=passed, content=body
        )
        for attempt in (1, 2):
            try:
                response = await backend.client.send(request, stream=True)
                break
            except RETRIED as exc:
                if attempt == 2:
                    await send_json(send, 502, {"error": f"backend unreachable: {exc}"})
                    return
            except httpx.TimeoutException:
                await send_json(send, 504, {"error": "backend did not answer in time"})
                return
        try:
            out = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in response.headers.multi_items()
                if k.lower() not in HOP_BY_HOP
            ]
            out.append((VERSION_HEADER.encode(), backend.version.encode()))
            start = {"type": "http.response.start", "status": response.status_code}
            await send({**start, "headers": out})
            # raw: the backend's bytes as sent (a content-encoding stays valid)
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()
