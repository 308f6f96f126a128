"""The server stack for the `stack` tests: brought up once by the real CLI, torn down at the end.

`tuneline up --stack server` runs against a fresh smoke-profile project in a world-readable
temporary directory (the cluster runs as the `postgres` user, which must reach its data dir;
pytest's own tmp dirs are private). At the end `tuneline down` must leave no process behind:
none of the recorded pids, and nothing whose command line or working directory is the stack's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import REPO, make_workspace

TUNELINE = str(Path(sys.executable).parent / "tuneline")
PREFECT = str(Path(sys.executable).parent / "prefect")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def stack_processes(base: Path) -> list[str]:
    """Live processes that belong to the stack under `base` (by command line or cwd)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        cmd = " ".join(proc.info["cmdline"] or [])
        if str(base) in cmd or str(proc.info["cwd"] or "").startswith(str(base)):
            found.append(f"{proc.pid}: {cmd[:160]}")
    return found


def cli(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TUNELINE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """{"project", "home", "state", "env", "up_s"}: the running stack; client env applied."""
    from tuneline.stack import load

    base = Path(tempfile.mkdtemp(prefix="tuneline-stack-"))
    base.chmod(0o755)
    project = make_workspace(base / "project")
    shutil.copytree(REPO / "infra", project / "infra")
    home = base / "home"
    env = {**os.environ, "TUNELINE_HOME": str(home)}
    started = time.monotonic()
    # per server: MLflow on a fresh PostgreSQL took over 240 s on 2 cores at load 20+
    up = cli("up", "--stack", "server", "--timeout", "900", "--root", str(project), env=env)
    up_s = time.monotonic() - started
    state = load(home)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert state is not None
        old = {k: os.environ.get(k) for k in state["env"]}
        os.environ.update(state["env"])
        try:
            yield {"project": project, "home": home, "state": state, "env": env, "up_s": up_s}
        finally:
            for key, value in old.items():
                os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    finally:
        started = time.monotonic()
        down = cli("down", "--root", str(project), env=env, timeout=300)
        print(f"\nstack: up {up_s:.0f} s, down {time.monotonic() - started:.0f} s")
        left = (
            []
            if state is None
            else [
                f"{name} {s.pid}"
                for name, s in state["services"].items()
                if psutil.pid_exists(s.pid)
                and psutil.Process(s.pid).status() != psutil.STATUS_ZOMBIE
            ]
        )
        left += stack_processes(base)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not left, f"left running after `tuneline down`: {left}"
        shutil.rmtree(base, ignore_errors=True)


def api(stack: dict[str, Any]) -> str:
    return str(stack["state"]["env"]["PREFECT_API_URL"])


def trigger(stack: dict[str, Any], flow: str, deployment: str, **parameters: Any) -> str:
    """Create a flow run of a deployment through the REST API; returns its id."""
    base = api(stack)
    dep = httpx.get(f"{base}/deployments/name/{flow}/{deployment}", timeout=30)
    dep.raise_for_status()
    run = httpx.post(
        f"{base}/deployments/{dep.json()['id']}/create_flow_run",
        json={"parameters": parameters},
        timeout=30,
    )
    run.raise_for_status()
    return str(run.json()["id"])


def wait_final(stack: dict[str, Any], run_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run: dict[str, Any] = httpx.get(f"{api(stack)}/flow_runs/{run_id}", timeout=30).json()
        if run["state_type"] in FINAL:
            return run
        time.sleep(5)
    raise AssertionError(f"flow run {run_id} not finished within {timeout_s:.0f} s")


@pytest.fixture(scope="session")
def deployed(stack: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", "infra/prefect.yaml"],
        cwd=stack["project"],
        env={**stack["env"], **stack["state"]["env"]},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return stack
