"""A process SIGKILLed while it runs a server (the flow during the Bento smoke test) leaves no
server behind: `tasks.promote.start_server` ties the server's process group to its parent.

A child Python process starts the server, prints its pid, and SIGKILLs itself, so no
`finally` runs; afterwards every process of the server's session must be gone within a
bounded wait, and its port closed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers_serving import build_variant, build_variant_bento, make_project
from tests.processes import live_processes
from tuneline.config import load_params
from tuneline.io import md5_file

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]

SLEEPER = textwrap.dedent(
    """
    import os, signal, subprocess
    from tasks.promote import start_server
    proc = start_server(["sleep", "300"], env=dict(os.environ), log=subprocess.DEVNULL)
    print(proc.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)

SMOKE_SERVER = textwrap.dedent(
    """
    import os, signal, sys
    from tasks.promote import free_port, serve_bento, wait_ready
    tag, log = sys.argv[1], sys.argv[2]
    port = free_port()
    with serve_bento(tag, port=port, log_path=__import__("pathlib").Path(log)) as proc:
        assert wait_ready(f"http://127.0.0.1:{port}", proc, 180), open(log).read()[-2000:]
        print(proc.pid, port, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # the flow dies mid smoke test: no finally runs
    """
)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_child(script: str, *args: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])
    return proc.stdout.split()


def wait_gone(sid: int, timeout_s: float, marker: str | None = None) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := live_processes(session=sid, cmdline_contains=marker)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.5)
    for pid in left:  # clean up after a failure
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


@pytest.fixture(autouse=True)
def linux_only() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG and /proc are Linux-only")


def test_killed_parent_takes_its_server_down() -> None:
    pid = int(run_child(SLEEPER)[0])
    left = wait_gone(pid, 10)
    assert not left, f"orphaned processes of session {pid}: {left}"


def test_flow_killed_during_smoke_test_leaves_no_bento_server(tmp_path: Path) -> None:
    params = load_params(REPO, profile="smoke")
    make_project(tmp_path / "project")
    variant = build_variant(
        tmp_path / "project", tmp_path / "variant", params, shuffle=False, steps=5
    )
    version = f"orphan-{md5_file(variant / 'model.onnx')[:10]}"
    tag = build_variant_bento(variant, params, name="orphan-classifier", version=version)
    pid_text, port_text = run_child(SMOKE_SERVER, tag, str(tmp_path / "serve.log"))
    pid, port = int(pid_text), int(port_text)
    left = wait_gone(pid, 60, marker=tag)
    assert not left, f"orphaned server processes of session {pid}: {left}"
    assert not port_open(port), f"port {port} still answers"
