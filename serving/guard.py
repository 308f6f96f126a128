"""ASGI middleware in front of the served model: bearer token, content type, body size, timeout.

BentoML validates the JSON body itself (pydantic, 400 with a message), but it answers a request
timeout with 504 and accepts any content type as JSON; the endpoint contract is "bad input gets
a 4xx with a JSON message, never a 5xx", so those checks live here.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
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


class RequestGuard:
    """Refuse unauthenticated, non-JSON, oversized or too-slow requests with a JSON 4xx.

    Args:
        app: the wrapped ASGI app.
        timeout_s: seconds until the response must start; later -> 408.
        max_body_bytes: request bodies above this -> 413 (read before parsing).
        token: bearer token; None reads TUNELINE_API_TOKEN at app start (empty = no auth).
    """

    def __init__(
        self,
        app: ASGIApp,
        timeout_s: float = 30.0,
        max_body_bytes: int = 1_000_000,
        token: str | None = None,
    ) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.token = os.environ.get(TOKEN_ENV, "") if token is None else token

    def _authorized(self, scope: Scope) -> bool:
        if not self.token:
            return True
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, value = given.partition(" ")
        # compare_digest: the check takes the same time whatever prefix matches.
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            await send_json(
                send,
                401,
                {"error": "missing or invalid bearer token"},
                headers=[("www-authenticate", "Bearer")],
            )
            return
        if scope.get("method") == "POST":
            headers = dict(scope.get("headers") or [])
            ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
            if ctype.lower() != "application/json":
                await send_json(
                    send, 415, {"error": f"content type must be application/json, got '{ctype}'"}
                )
                return
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await send_json(
                    send, 413, {"error": f"request body over {self.max_body_bytes} bytes"}
                )
                return
        await self._with_timeout(scope, receive, send)

    async def _with_timeout(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = asyncio.Event()

        async def tracked_send(message: Message) -> None:
            started.set()
            await send(message)

        inner = asyncio.ensure_future(self.app(scope, receive, tracked_send))
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
