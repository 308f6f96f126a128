"""ASGI middleware in front of the served model, in two layers.

`RouteGuard` wraps BentoML's whole app (service.py installs it through the Service's
`to_asgi`): headers over a size cap get 431, and a path the app does not route gets 404.
It has to sit there because BentoML puts its HTTP metrics middleware outside every
middleware a service adds, and that middleware labels its series with the raw path: each
unknown path would otherwise become new series on /metrics, without bound.

`RequestGuard` sits inside (`Service.add_asgi_middleware`): bearer token, content type, body
size, timeout. BentoML validates the JSON body itself (pydantic, 400 with a message), but it
answers a request timeout with 504 and accepts any content type as JSON; the endpoint
contract is "bad input gets a 4xx with a JSON message, never a 5xx", so those checks live here.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Probes and the Prometheus scrape stay open so orchestrators need no secret.
OPEN_PATHS = ("/livez", "/healthz", "/readyz", "/metrics")
TOKEN_ENV = "TUNELINE_API_TOKEN"


async def send_json(send: Send, status: int, body: dict[str, Any], headers: Any = ()) -> None:
    payload = json.dumps(body).encode("utf-8")
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *[(k.encode(), v.encode()) for k, v in headers],
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


class RouteGuard:
    """Refuse, before the wrapped app sees them, requests with oversized headers (431) or
    for a path it does not route (404), each with a JSON message.

    Args:
        app: the wrapped ASGI app (BentoML's, its metrics middleware included).
        is_routed: whether the app routes a path (see `routed_paths`).
        max_header_bytes: header names and values together above this -> 431. The HTTP
            parser in front (uvicorn with httptools) has no limit of its own.
    """

    def __init__(
        self, app: ASGIApp, is_routed: Callable[[str], bool], max_header_bytes: int = 16384
    ) -> None:
        self.app = app
        self.is_routed = is_routed
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        size = sum(len(name) + len(value) for name, value in scope.get("headers") or ())
        path = scope.get("path", "")
        if size <= self.max_header_bytes and self.is_routed(path):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # the server answers 403
        elif size > self.max_header_bytes:
            message = f"request headers over {self.max_header_bytes} bytes"
            await send_json(send, 431, {"error": message})
        else:
            await send_json(send, 404, {"error": f"no such endpoint: {path[:200]}"})


def routed_paths(app: Any) -> Callable[[str], bool]:
    """Whether a Starlette app routes a path, derived from its routes (no list kept by hand).

    A route routes what its pattern matches, whatever the method (a wrong method still gets
    the app's 405); a static-files mount routes the files it holds, not every path under it;
    any other mount routes everything below its prefix.

    Args:
        app: a Starlette app (BentoML's, from `Service.to_asgi`).

    Returns:
        A predicate on the request path.
    """
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    patterns, files, prefixes = [], set(), []
    for route in app.routes:
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            for root in route.app.all_directories or []:
                files |= {
                    f"{route.path}/{p.relative_to(root).as_posix()}"
                    for p in Path(root).rglob("*")
                    if p.is_file()
                }
        elif isinstance(route, Mount):
            prefixes.append(f"{route.path}/")
        elif getattr(route, "path_regex", None) is not None:
            patterns.append(route.path_regex)

    def is_routed(path: str) -> bool:
        return (
            path in files
            or path.startswith(tuple(prefixes))
            or any(p.match(path) for p in patterns)
        )

    return is_routed


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields `body` as one message, then defers to `receive` (disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if not pending:
            return await receive()
        pending = False
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


class RequestGuard:
    """Refuse unauthenticated, non-JSON, oversized or too-slow requests with a JSON 4xx.

    Args:
        app: the wrapped ASGI app.
        timeout_s: seconds until the response must start (body upload included); later -> 408.
        max_body_bytes: request bodies above this -> 413, however they are framed (a declared
            Content-Length, or counted as a chunked body streams in); the app sees the body
            only once it is whole and under the cap.
        token: bearer token; None reads TUNELINE_API_TOKEN at app start (empty = no auth).
        body_bytes_by_path: a cap other than `max_body_bytes` for these paths (the bulk
            endpoint's jobs are larger than one /predict call).
    """

    def __init__(
        self,
        app: ASGIApp,
        timeout_s: float = 30.0,
        max_body_bytes: int = 1_000_000,
        token: str | None = None,
        body_bytes_by_path: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.body_bytes_by_path = dict(body_bytes_by_path or {})
        token = os.environ.get(TOKEN_ENV, "") if token is None else token
        # Bytes on both sides: compare_digest refuses non-ASCII str, and a header is bytes.
        self.token = token.encode("utf-8")

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        if not self.token:
            return True
        scheme, _, value = headers.get(b"authorization", b"").partition(b" ")
        # compare_digest: the check takes the same time whatever prefix matches.
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if not self._authorized(headers):
            await send_json(
                send,
                401,
                {"error": "missing or invalid bearer token"},
                headers=[("www-authenticate", "Bearer")],
            )
            return
        if scope.get("method") == "POST":
            ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
            if ctype.lower() != "application/json":
                await send_json(
                    send, 415, {"error": f"content type must be application/json, got '{ctype}'"}
                )
                return
            cap = self._cap(scope)
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > cap:
                await self._too_large(send, cap)
                return
        await self._with_timeout(scope, receive, send)

    def _cap(self, scope: Scope) -> int:
        return self.body_bytes_by_path.get(scope.get("path", ""), self.max_body_bytes)

    async def _too_large(self, send: Send, cap: int) -> None:
        await send_json(send, 413, {"error": f"request body over {cap} bytes"})

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Read the body here, counting, rather than count what the app pulls: once the app has
        # started its response (or parsed half the body) a 413 can no longer be sent.
        chunks, size, cap = [], 0, self._cap(scope)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                await self._too_large(send, cap)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay(b"".join(chunks), receive), send)

    async def _with_timeout(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = asyncio.Event()

        async def tracked_send(message: Message) -> None:
            started.set()
            await send(message)

        inner = asyncio.ensure_future(self._capped(scope, receive, tracked_send))
        waiter = asyncio.ensure_future(started.wait())
        done, _ = await asyncio.wait(
            {inner, waiter}, timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            # Nothing sent yet: cancel the work and answer for it.
            inner.cancel()
            waiter.cancel()
            await asyncio.gather(inner, waiter, return_exceptions=True)
            await send_json(
                send, 408, {"error": f"request not processed within {self.timeout_s:g} seconds"}
            )
            return
        waiter.cancel()
        await inner
