"""Smoke test: serve the built Bento over HTTP and check it answers like in-process ORT.

The Bento is started as `bentoml serve <tag>` on a free loopback port in its own process
group, asked for /readyz in a bounded loop, sent test texts, and its answers compared with
in-process ORT on the same variant; the group is always killed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import task

from serving.predictor import OnnxTextClassifier
from tasks.release.package import BentoResult, bentoml_env
from tuneline.config import Params
from tuneline.lineage import PREPARED
from tuneline.processes import start_child, stop_group
from tuneline.settings import get_settings


@dataclass(frozen=True)
class SmokeResult:
    """Did the served Bento answer like the in-process model?"""

    passed: bool
    reason: str
    tag: str


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_bento(
    tag: str, *, port: int, host: str = "127.0.0.1", log_path: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `bentoml serve tag` in its own process group for the duration of the block.

    Args:
        tag: the Bento.
        port: where it listens; host: on which address.
        log_path: its output (discarded when None).

    Yields:
        The server process (its whole group is stopped on exit).
    """
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    cmd = [sys.executable, "-m", "bentoml", "serve", tag, "--host", host, "--port", str(port)]
    proc = start_child(cmd, env=bentoml_env(), log=log)
    try:
        yield proc
    finally:
        stop_group(proc)
        if log_path:
            log.close()  # type: ignore[union-attr]


def wait_ready(base_url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Poll /readyz until 200, the process dies, or `timeout_s` passes.

    Args:
        base_url: the server; proc: its process; timeout_s: how long to wait.

    Returns:
        Whether it answered ready.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/readyz", timeout=2.0).status_code == 200:
                return True
        time.sleep(0.5)
    return False


@task
def smoke_test_bento(
    bento: BentoResult, *, params: Params, project_root: Path | str = "."
) -> SmokeResult:
    """Serve the Bento on a free loopback port and compare its answers with in-process ORT.

    Args:
        bento: the built Bento (tag and the variant directory it bundles).
        params: settings; `gate.smoke_texts`, `smoke_timeout_s` and `smoke_atol` apply.
        project_root: where the DVC-pinned test split is read.

    Returns:
        SmokeResult: passed, or the first difference (or why the Bento never answered).
    """
    import httpx

    texts = (
        pd.read_parquet(Path(project_root) / PREPARED / "test.parquet")["text"]
        .astype(str)
        .tolist()[: params.gate.smoke_texts]
    )
    expected = OnnxTextClassifier(bento.variant_dir).predict(texts)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    token = get_settings().api_token or os.environ.get("TUNELINE_API_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    log_path = get_settings().root / "logs" / f"smoke-{bento.tag.replace(':', '-')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with serve_bento(bento.tag, port=port, log_path=log_path) as proc:
        if not wait_ready(base, proc, params.gate.smoke_timeout_s):
            return SmokeResult(
                False, f"Bento not ready within timeout (log: {log_path})", bento.tag
            )
        try:
            resp = httpx.post(
                f"{base}/predict", json={"texts": texts}, headers=headers, timeout=60.0
            )
        except httpx.HTTPError as exc:
            return SmokeResult(False, f"request failed: {exc}", bento.tag)
    if resp.status_code != 200:
        return SmokeResult(False, f"HTTP {resp.status_code}: {resp.text[:300]}", bento.tag)
    got = resp.json()
    if len(got) != len(expected):
        return SmokeResult(False, f"{len(got)} answers for {len(expected)} texts", bento.tag)
    for i, (served, local) in enumerate(zip(got, expected, strict=True)):
        if served["label"] != local.label:
            return SmokeResult(False, f"text {i}: {served['label']} != {local.label}", bento.tag)
        diff = max(abs(served["probabilities"][k] - v) for k, v in local.probabilities.items())
        if diff > params.gate.smoke_atol:
            return SmokeResult(False, f"text {i}: probabilities differ by {diff:.2e}", bento.tag)
    return SmokeResult(True, f"Bento answered {len(texts)} texts like in-process ORT", bento.tag)
