"""`tuneline serve --follow`: serve the champion, and keep serving it while it moves.

A reverse proxy (tasks/release/proxy.py) listens on serve.host:serve.port; behind it, the
champion's Bento runs on a free loopback port. Every serve.follow_poll_s the `@champion` alias
is read from the MLflow registry (a poll, not a webhook: it works on every store). When it
names another version (a promotion, a rollback, a hand-set alias), that version's Bento is
started beside the running one, must answer /readyz and a smoke request within
gate.smoke_timeout_s, and only then takes the traffic; the old Bento finishes the requests it
holds and is stopped. A version refused (no Bento, or what `check` says) or a Bento that never
gets ready leaves the old one serving, and is said once. Every Bento is a child tied to this
process (tuneline.processes): stopped on the way out, signalled if we are killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from tasks.release.package import bentoml_env
from tasks.release.proxy import Backend, Proxy, upstream_timeout_s
from tasks.release.smoke import free_port
from tuneline import registry
from tuneline.config import Params
from tuneline.errors import TunelineError
from tuneline.processes import start_child, stop_group
from tuneline.settings import get_settings

SMOKE_BODY = {"texts": ["tuneline follow: smoke request before the switch"]}
# A refusal of the version the alias names: None = it may be served, else the reason why not.
Check = Callable[[str], "str | None"]


class FollowError(TunelineError):
    """The first champion's Bento never got ready: there is nothing to serve."""


def _auth() -> dict[str, str]:
    token = get_settings().api_token or os.environ.get("TUNELINE_API_TOKEN", "")
    return {"Authorization": f"Bearer {token}"} if token else {}


class Follower:
    """Starts, checks, switches to and stops the Bentos behind one proxy.

    Args:
        name: the registered model whose `@champion` is followed.
        params: settings (serve.*, gate.smoke_timeout_s).
        proxy: the proxy the traffic goes through.
        check: may this version be served? (None: yes; else the reason it may not).
        say: where progress lines go (the console).
        log_dir: where each Bento's output goes.
    """

    def __init__(
        self,
        name: str,
        params: Params,
        proxy: Proxy,
        *,
        check: Check,
        say: Callable[[str], None],
        log_dir: Path,
    ) -> None:
        self.name = name
        self.params = params
        self.proxy = proxy
        self.check = check
        self.say = say
        self.log_dir = log_dir
        self.backends: list[Backend] = []  # every one started and not yet stopped
        self.said: dict[str, str] = {}  # version -> the refusal already shown
        self.failed: set[str] = set()  # Bento tags that never got ready: not tried again
        self.switches: list[dict[str, Any]] = []  # one record per switch (for figures)

    async def start(self, version: str, tag: str) -> Backend | None:
        """Start `tag` on a free loopback port; the Backend once it answered /readyz and a
        smoke request, else None (it is stopped, the reason said)."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"follow-{tag.replace(':', '-')}-{port}.log"
        cmd = [sys.executable, "-m", "bentoml", "serve", tag, "--host", "127.0.0.1"]
        with open(log_path, "wb") as log:
            proc = start_child([*cmd, "--port", str(port)], env=bentoml_env(), log=log)
        limits = httpx.Limits(max_connections=self.params.serve.max_concurrency)
        timeout = httpx.Timeout(upstream_timeout_s(self.params.serve))
        client = httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits)
        backend = Backend(version, tag, url, client, proc)
        self.backends.append(backend)
        problem = await self._ready(backend, self.params.gate.smoke_timeout_s)
        if problem is None:
            return backend
        self.say(f"v{version} ({tag}) not served: {problem} (log: {log_path})")
        await self.stop(backend)
        return None

    async def _ready(self, backend: Backend, timeout_s: float) -> str | None:
        """None once `backend` answers /readyz with 200 and the smoke request with one
        prediction, within `timeout_s`; else what went wrong."""
        deadline = time.monotonic() + timeout_s
        assert backend.proc is not None
        while time.monotonic() < deadline:
            if backend.proc.poll() is not None:
                return f"its server exited ({backend.proc.returncode})"
            with contextlib.suppress(httpx.HTTPError):
                if (await backend.client.get("/readyz", timeout=2.0)).status_code == 200:
                    break
            await asyncio.sleep(0.25)
        else:
            return f"no /readyz within {timeout_s:g} s"
        try:
            resp = await backend.client.post("/predict", json=SMOKE_BODY, headers=_auth())
        except httpx.HTTPError as exc:
            return f"smoke request failed: {exc!r}"
        if resp.status_code != 200:
            return f"smoke request got HTTP {resp.status_code}: {resp.text[:200]}"
        answer = resp.json()
        if not (isinstance(answer, list) and len(answer) == 1 and "label" in answer[0]):
            return f"smoke request got {resp.text[:200]}"
        return None

    async def stop(self, backend: Backend) -> None:
        """Stop one Bento (its whole process group) and close its connections."""
        with contextlib.suppress(ValueError):
            self.backends.remove(backend)
        await backend.client.aclose()
        if backend.proc is not None:
            await asyncio.to_thread(stop_group, backend.proc)

    async def stop_all(self) -> None:
        for backend in list(self.backends):
            await self.stop(backend)

    async def switch_to(self, version: str, tag: str) -> bool:
        """Start `version`'s Bento and, once it is ready, send the traffic to it; the old
        one drains and is stopped. Returns whether the switch happened."""
        began = time.monotonic()
        backend = await self.start(version, tag)
        if backend is None:
            self.failed.add(tag)
            return False
        old = self.proxy.switch(backend)
        switched = time.monotonic()
        self.say(f"serving v{version} ({tag}); ready and switched in {switched - began:.1f} s")
        record: dict[str, Any] = {"to": version, "from": old.version if old else None}
        record["start_to_switch_s"] = round(switched - began, 3)
        if old is not None:
            drained = await self.proxy.drain(old, upstream_timeout_s(self.params.serve))
            record["old_drained"] = drained
            await self.stop(old)
            self.say(f"stopped v{old.version} ({old.tag})" + ("" if drained else ", not drained"))
        self.switches.append(record)
        return True

    def wanted(self) -> tuple[str, str] | None:
        """The (version, Bento tag) to serve now if it is not what is served, else None
        (a blocking registry read: run it in a thread)."""
        version = registry.alias_version(self.name, registry.CHAMPION)
        current = self.proxy.current
        if version is None or (current is not None and current.version == version):
            return None
        tag = registry.version_tags(self.name, version).get("bento_tag")
        refusal = "it has no Bento" if not tag else self.check(version)
        if tag in self.failed:
            refusal = f"its Bento {tag} did not get ready before"
        if refusal is not None:
            if self.said.get(version) != refusal:
                served = f"v{current.version}" if current else "nothing"
                self.say(f"champion is v{version}, not served ({refusal}); serving {served}")
                self.said[version] = refusal
            return None
        assert tag is not None
        return version, tag

    async def follow(self) -> None:
        """Poll the alias and switch, until cancelled. A registry that does not answer is
        said and asked again at the next poll: serving goes on meanwhile."""
        while True:
            await asyncio.sleep(self.params.serve.follow_poll_s)
            try:
                found = await asyncio.to_thread(self.wanted)
            except Exception as exc:  # MLflow unreachable, a store locked: ask again later
                self.say(f"registry read failed ({type(exc).__name__}: {exc}); retrying")
                continue
            if found is not None:
                await self.switch_to(*found)


def listen(host: str, port: int) -> socket.socket:
    """The proxy's listening socket, bound now: a busy port is a named error before any Bento
    is started."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise FollowError(f"serve --follow: cannot listen on {host}:{port}: {exc}") from exc


async def _serve(follower: Follower, version: str, tag: str, sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(
        follower.proxy,
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(upstream_timeout_s(follower.params.serve)),
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))  # until SIGINT / SIGTERM
    tasks = [serving, asyncio.create_task(follower.switch_to(version, tag))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if not serving.done():
            if not tasks[1].result():
                raise FollowError(f"serve --follow: v{version}'s Bento {tag} never got ready")
            tasks.append(asyncio.create_task(follower.follow()))
            await serving
    finally:
        server.should_exit = True
        for task in tasks[1:]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await follower.stop_all()


def follow_champion(
    params: Params, *, host: str, port: int, version: str, tag: str, check: Check, say: Any
) -> int:
    """Serve `version` (the champion now) through the proxy on host:port, then follow it.

    Args:
        params: settings; params.gate.registered_model is the model followed.
        host, port: where the proxy listens.
        version, tag: the champion and its Bento, as the CLI found them.
        check: may a version be served (None) or why not.
        say: where progress lines go.

    Returns:
        The exit status: 0, or 128 + N when signal N stopped it.

    Raises:
        FollowError: the port is taken, or the first Bento never got ready.
    """
    sock = listen(host, port)
    proxy = Proxy(params.serve)
    log_dir = get_settings().root / "logs"
    follower = Follower(
        params.gate.registered_model, params, proxy, check=check, say=say, log_dir=log_dir
    )
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        # uvicorn saves this handler, handles the signal itself, then calls this one again
        # once it has stopped: only a note, so the Bentos are stopped before we exit
        received.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(_serve(follower, version, tag, sock))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    return 128 + received[0] if received else 0
