"""A process SIGKILLed (or SIGTERMed) while it runs a child leaves no child behind.

Every kill point here sends the signal to one process only, never its group, so no `finally`
of the victim runs and nothing but `tuneline.processes` (PR_SET_PDEATHSIG, signal forwarding,
workers checking their agent's pid) can stop the children. Afterwards each child recorded
before the kill must be gone within a bounded wait, and a server's port closed. The counts of
processes left at each kill point go to orphans.json (all must be 0).

Kill points: a server started by the smoke test's helper; `tuneline run --data-only` while
its Prefect server is up; a `tuneline serve`-style foreground runner (SIGTERM, SIGINT,
SIGKILL; a tiny http.server and a real Bento); fine-tuning, the task or torchrun's agent
killed while its worker still imports torch or while it trains. The local Prefect server's
Host and Origin check is tested on the real server here too.

`make test` runs the helper's server, the foreground runners and the smoke test's Bento. The
`tuneline run` kill (a workspace and a Prefect server start: 2 min on a busy machine), the
fine-tuning kills and the real Prefect server are slow (`make reliability`); their mechanisms
stay in `make test`: the helper case here, tests/unit/core/test_processes.py and test_services.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import make_workspace
from tests.processes import descendants, wait_gone
from tests.reliability_figures import write_figures

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PDEATHSIG and /proc"),
]

REPO = Path(__file__).resolve().parents[2]
FIGURES: dict[str, dict[str, float]] = {}  # processes left after each kill point
T = TypeVar("T")


def left_after(kill_point: str, timeout_s: float, **which: Any) -> list[int]:
    """`wait_gone(**which)`; how many were left, and how long they took, go in orphans.json."""
    started = time.monotonic()
    left = wait_gone(timeout_s=timeout_s, **which)
    FIGURES[kill_point] = {"left": len(left), "seconds": round(time.monotonic() - started, 1)}
    write_figures("orphans.json", {"after_kill": FIGURES, "left_must_be": 0})
    return left


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, ready: Callable[[], T], proc: subprocess.Popen, timeout_s: float) -> T:
    """Poll `ready()` until it is truthy (returned), `proc` exits or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while not (found := ready()):
        assert proc.poll() is None, f"exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s"
        time.sleep(0.05)
    return found


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


# --- the smoke test's server ----------------------------------------------------------------

SLEEPER = textwrap.dedent(
    """
    import os, signal, subprocess
    from tuneline.processes import start_child
    proc = start_child(["sleep", "300"], env=dict(os.environ), log=subprocess.DEVNULL)
    print(proc.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)

SMOKE_SERVER = textwrap.dedent(
    """
    import os, signal, sys
    from tasks.release.smoke import free_port, serve_bento, wait_ready
    tag, log = sys.argv[1], sys.argv[2]
    port = free_port()
    with serve_bento(tag, port=port, log_path=__import__("pathlib").Path(log)) as proc:
        assert wait_ready(f"http://127.0.0.1:{port}", proc, 180), open(log).read()[-2000:]
        print(proc.pid, port, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # the flow dies mid smoke test: no finally runs
    """
)


@pytest.fixture(scope="module")
def bento_tag(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tests.helpers_serving import build_variant, build_variant_bento, make_project
    from tuneline.config import load_params
    from tuneline.io import md5_file

    tmp = tmp_path_factory.mktemp("orphan-bento")
    params = load_params(REPO, profile="smoke")
    make_project(tmp / "project")
    variant = build_variant(tmp / "project", tmp / "variant", params, shuffle=False, steps=5)
    version = f"orphan-{md5_file(variant / 'model.onnx')[:10]}"
    return build_variant_bento(variant, params, name="orphan-classifier", version=version)


def test_killed_parent_takes_its_server_down() -> None:
    pid = int(run_child(SLEEPER)[0])
    assert not left_after("smoke_helper_sleep", 10, session=pid)


def test_flow_killed_during_smoke_test_leaves_no_bento_server(
    bento_tag: str, tmp_path: Path
) -> None:
    pid_text, port_text = run_child(SMOKE_SERVER, bento_tag, str(tmp_path / "serve.log"))
    pid, port = int(pid_text), int(port_text)
    left = left_after("smoke_test_bento", 60, session=pid, cmdline_contains=bento_tag)
    assert not left, f"orphaned server processes: {left}"
    assert not port_open(port), f"port {port} still answers"


# --- `tuneline run`'s Prefect server --------------------------------------------------------

# ours (tuneline.prefect_server) or Prefect's own ephemeral one (uvicorn ... server:create_app)
PREFECT_SERVER = re.compile(r"tuneline\.prefect_server|prefect\.server\.api\.server:create_app")


@pytest.mark.slow
def test_killed_run_leaves_no_prefect_server(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "project")
    home = tmp_path / "home"
    env = {**os.environ, "TUNELINE_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    env.pop("PREFECT_API_URL", None)
    with open(tmp_path / "run.log", "wb") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "run", "--data-only", "--root", str(ws)],
            cwd=ws,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    servers: set[int] = set()

    def flow_running() -> bool:  # the server answered: the flow is running DVC stages
        family = descendants(run.pid)
        servers.update(pid for pid, cmd in family.items() if PREFECT_SERVER.search(cmd))
        return bool(servers) and any("-m dvc" in cmd for cmd in family.values())

    try:
        wait_for("a Prefect server and a DVC stage", flow_running, run, 300)
    except AssertionError:
        raise AssertionError((tmp_path / "run.log").read_text()[-3000:]) from None
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    left = left_after("prefect_server_after_run_sigkill", 30, pids=servers)
    assert not left, f"left: {left}"


# --- `tuneline serve`: the foreground runner ------------------------------------------------

FOREGROUND = textwrap.dedent(
    """
    import json, os, sys
    from tuneline.processes import run_foreground
    sys.exit(run_foreground(json.loads(sys.argv[1]), env=dict(os.environ)))
    """
)


def kill_foreground(cmd: list[str], port: int, sig: int, timeout_s: float) -> tuple[int, list[int]]:
    """Run `cmd` through `run_foreground` until `port` answers, then send `sig` to the runner
    alone; returns the runner's exit status and the pids of its descendants before the kill."""
    runner = subprocess.Popen(
        [sys.executable, "-c", FOREGROUND, json.dumps(cmd)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(f"an answer on port {port}", lambda: port_open(port), runner, timeout_s)
        family = list(descendants(runner.pid))
    finally:
        os.kill(runner.pid, sig)
        rc = runner.wait(timeout=60)
    return rc, family


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name
)
def test_foreground_server_stops_with_its_runner(sig: signal.Signals) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    rc, family = kill_foreground(cmd, port, sig, 60)
    left = left_after(f"foreground_http_{sig.name}", 30, pids=family)
    assert not left, f"left: {left}"
    assert not port_open(port)
    if sig == signal.SIGTERM:
        assert rc == 128 + signal.SIGTERM  # the server's own end, as a shell reports it


# SIGKILL of the runner: the arbiter gets SIGTERM (PDEATHSIG) and shuts its workers down itself,
# which took over 30 s on a loaded 2-core CI machine; make test keeps the SIGKILL case of the
# runner itself (test_foreground_server_stops_with_its_runner) and the real Bento under SIGTERM.
@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)],
    ids=lambda s: s.name,
)
def test_served_bento_stops_with_tuneline_serve(bento_tag: str, sig: signal.Signals) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", "127.0.0.1"]
    _, family = kill_foreground([*cmd, "--port", str(port)], port, sig, 240)
    left = left_after(f"foreground_bento_{sig.name}", 90, pids=family)
    assert not left, f"left: {left}"
    assert not port_open(port)


# --- fine-tuning ----------------------------------------------------------------------------

# Long enough that a worker left behind would still be training when the wait below ends.
FINETUNE_OVERRIDES = {"train.max_steps": 3000, "train.save_steps": 10, "train.eval_steps": 3000}

FINETUNE = textwrap.dedent(
    """
    import json, sys, threading
    from pathlib import Path
    from tuneline.config import load_params
    from tasks.finetune.task import finetune_classifier
    repo, data, out, overrides = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    params = load_params(repo, "smoke", json.loads(overrides))
    # in a worker thread, as Prefect runs a task
    train = finetune_classifier.fn
    task = threading.Thread(target=train, args=(data, params), kwargs={"output_dir": out})
    task.start()
    task.join()
    """
)


@pytest.fixture(scope="module")
def filler_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.synthetic import filler_splits

    return filler_splits(tmp_path_factory.mktemp("orphan-finetune") / "prepared")


@pytest.fixture
def finetune(filler_data: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    out = tmp_path / "run"
    overrides = json.dumps(FINETUNE_OVERRIDES)
    task = subprocess.Popen(
        [sys.executable, "-c", FINETUNE, str(REPO), str(filler_data), str(out), overrides],
        cwd=REPO,
        env={**os.environ, "TUNELINE_HOME": str(tmp_path / "home")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    yield task, out
    if task.poll() is None:
        task.kill()
        task.wait()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("victim", "when"),
    [("task", "worker_importing"), ("task", "training"), ("agent", "worker_importing")],
)
def test_killed_finetune_leaves_no_worker(
    finetune: tuple[subprocess.Popen, Path], victim: str, when: str
) -> None:
    from tasks.finetune.checkpoints import MARKER, list_checkpoints

    task, out = finetune
    spec = str(out / "spec.json")  # on the launcher's and every worker's command line

    def workers() -> list[int]:
        return [
            pid
            for pid, cmd in descendants(task.pid).items()
            if f"tasks.finetune.worker {spec}" in cmd and "tasks.finetune.launcher" not in cmd
        ]

    def trained() -> bool:
        return any((p / MARKER).exists() for _, p in list_checkpoints(out / "checkpoints"))

    wait_for("a training worker", workers, task, 300)
    if when == "training":
        wait_for("a complete checkpoint", trained, task, 300)
    family = descendants(task.pid)
    agent = next(pid for pid, cmd in family.items() if "tasks.finetune.launcher" in cmd)
    os.kill(task.pid if victim == "task" else agent, signal.SIGKILL)
    left = left_after(f"finetune_{victim}_sigkill_{when}", 60, pids=family, cmdline_contains=spec)
    assert not left, f"left: {left}"


# --- the local Prefect server's Host and Origin check ---------------------------------------


@pytest.mark.slow
def test_local_prefect_server_serves_its_ui_and_only_its_own_origin(tmp_path: Path) -> None:
    import httpx

    from tuneline import prefect_server
    from tuneline.processes import start_child, stop_group

    port = prefect_server.free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    env |= prefect_server.server_env(port, ephemeral=False)
    with open(tmp_path / "server.log", "wb") as log:
        proc = start_child(prefect_server.command(port, ephemeral=False), env=env, log=log)
    try:
        wait_for("the Prefect API", lambda: prefect_server.healthy(f"{base}/api"), proc, 300)
        page = httpx.get(f"{base}/", follow_redirects=True, timeout=30)
        assert page.status_code == 200 and "<script" in page.text
        scripts = re.findall(r'<script[^>]+src="([^"]+)"', page.text)
        assert scripts and httpx.get(f"{base}{scripts[0]}", timeout=30).status_code == 200
        ui = httpx.get(f"{base}/ui-settings", timeout=30).json()
        assert ui["api_url"] == f"{base}/api"  # where the UI sends its API calls: same origin
        api = f"{base}/api/flows/filter"
        for origin in (base, f"http://localhost:{port}"):  # the UI, under either name
            same = httpx.post(api, json={}, headers={"Origin": origin}, timeout=30)
            assert same.status_code == 200
            assert same.headers["access-control-allow-origin"] == origin
        evil = {"Origin": "https://evil.example"}
        assert httpx.post(api, json={}, headers=evil, timeout=30).status_code == 403
        preflight = httpx.options(
            api, headers={**evil, "Access-Control-Request-Method": "POST"}, timeout=30
        )
        assert preflight.status_code == 403
        rebound = {"Host": f"evil.example:{port}"}
        assert httpx.post(api, json={}, headers=rebound, timeout=30).status_code == 400
    finally:
        stop_group(proc)
