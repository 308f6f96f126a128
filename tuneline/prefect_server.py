"""The local Prefect server: Prefect's own app behind a Host and Origin check.

`python -m tuneline.prefect_server --port N [--ephemeral]` serves `create_app()` on 127.0.0.1:N.
Prefect checks neither the Host header nor, by default, the Origin (CORS `*`): any web page the
user opens could drive the API (a cross-origin "simple" POST is sent without a preflight, and DNS
rebinding gets round CORS altogether). Here only `127.0.0.1:N` and `localhost:N` are served
(400 otherwise), a request that names another Origin is refused (403), and Prefect's CORS
allow-list is the UI's own two origins.

`tuneline up` runs it as a standing server with the UI; a command that needs Prefect while
none is configured (`tuneline run`) runs it `--ephemeral` as a child tied to itself
(`ensure_api`), where Prefect would start its own ephemeral server, a child left running for
good when the command is SIGKILLed.
"""

from __future__ import annotations

import argparse
import atexit
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from tuneline.errors import TunelineError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HOST = "127.0.0.1"


def allowed_hosts(port: int) -> frozenset[str]:
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})


def allowed_origins(port: int) -> frozenset[str]:
    return frozenset(f"http://{host}" for host in allowed_hosts(port))


def server_env(port: int, *, ephemeral: bool) -> dict[str, str]:
    """Prefect settings for the server on `port` (they win over the caller's environment)."""
    env = {
        "PREFECT_SERVER_API_HOST": HOST,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_CORS_ALLOWED_ORIGINS": ",".join(sorted(allowed_origins(port))),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    if ephemeral:  # what Prefect's own ephemeral server sets: no UI, ephemeral services only
        env |= {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"}
    else:
        env["PREFECT_UI_API_URL"] = f"http://{HOST}:{port}/api"
    return env


class LocalOnly:
    """ASGI middleware: serve only requests addressed to this loopback port, from no other
    web origin. Requests without an Origin header (Prefect's client, curl) pass."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.hosts = allowed_hosts(port)
        self.origins = allowed_origins(port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            origin = headers.get(b"origin")
            if headers.get(b"host") not in self.hosts:
                return await _refuse(scope, receive, send, 400, "Invalid host header")
            if origin is not None and origin not in self.origins:
                return await _refuse(scope, receive, send, 403, "Cross-origin request refused")
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": text})
        return
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_app(port: int, *, ephemeral: bool) -> LocalOnly:
    """Prefect's server app for `port`, wrapped in `LocalOnly`. Reads Prefect's settings from
    the environment: set `server_env(port, ...)` before Prefect is first imported."""
    from prefect.server.api.server import create_app

    return LocalOnly(create_app(final=True, ephemeral=ephemeral), port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tuneline.prefect_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ephemeral", action="store_true", help="no UI; for one command")
    args = parser.parse_args(argv)
    os.environ.update(server_env(args.port, ephemeral=args.ephemeral))
    import uvicorn
    from prefect.settings import PREFECT_SERVER_API_KEEPALIVE_TIMEOUT

    uvicorn.run(
        build_app(args.port, ephemeral=args.ephemeral),
        host=HOST,
        port=args.port,
        timeout_keep_alive=PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value(),
        log_level="warning",
    )


# --- a server for this command only --------------------------------------------------------

_started: dict[str, Any] = {}  # the server this process started (one per process)


def command(port: int, *, ephemeral: bool) -> list[str]:
    cmd = [sys.executable, "-m", "tuneline.prefect_server", "--port", str(port)]
    return [*cmd, "--ephemeral"] if ephemeral else cmd


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def ensure_api(log: Path, timeout_s: float) -> str | None:
    """Give this process a Prefect API: the one Prefect's settings already name (a profile, a
    test harness), else an ephemeral server of ours on a free loopback port, tied to this
    process and stopped at exit, its URL put in PREFECT_API_URL.

    Call it after the PREFECT_* defaults are in the environment.

    Returns:
        The API URL of the server started here; None when one was already configured.

    Raises:
        TunelineError: the server did not answer within `timeout_s` (its log is named).
    """
    from prefect.settings import get_current_settings

    proc = _started.get("proc")
    if proc is not None and proc.poll() is None:  # started by an earlier call
        api_url = str(_started["url"])
    elif get_current_settings().api.url:
        return None
    else:
        api_url = _start(log, timeout_s)
    os.environ["PREFECT_API_URL"] = api_url
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()  # Prefect read the environment when first imported
    return api_url


def _start(log: Path, timeout_s: float) -> str:
    from tuneline.processes import start_child, stop_group

    log.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # another process may take the free port before the server binds it
        port = free_port()
        api_url = f"http://{HOST}:{port}/api"
        env = {**os.environ, **server_env(port, ephemeral=True)}
        env.pop("PREFECT_API_URL", None)
        with open(log, "ab") as fh:
            proc = start_child(command(port, ephemeral=True), env=env, log=fh)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline and not healthy(api_url):
            time.sleep(0.2)
        if proc.poll() is None and healthy(api_url):
            # registered before Prefect's own exit hooks (log and event flushes): runs after them
            atexit.register(stop_group, proc, 10.0)
            _started.update(proc=proc, url=api_url)
            return api_url
        stop_group(proc, grace_s=5.0)
        if time.monotonic() >= deadline:
            break
    raise TunelineError(f"the Prefect server did not answer within {timeout_s:.0f} s; see {log}")


if __name__ == "__main__":
    main()
