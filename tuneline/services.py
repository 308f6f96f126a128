"""`tuneline up` / `tuneline down`: a local Prefect server and MLflow tracking server.

Both bind 127.0.0.1 and keep their state under TUNELINE_HOME. While they run, other commands
use them (their URLs are recorded in services.json); when they are down, the embedded defaults
(a Prefect server for the one command, the sqlite file store) are used.

Each record also holds the server's command line and start time: a pid is only a number, and
after a reboot or a crash it can belong to anything. `down` signals only a process that still
matches both, and `running` trusts only such a process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline import prefect_server
from tuneline.errors import TunelineError
from tuneline.io import write_json
from tuneline.processes import start_child, stop_pid_group
from tuneline.webhook_keys import mlflow_server_env as webhook_env

PREFECT_PORT = 4200
MLFLOW_PORT = 5000


# psutil's start times come from the boot time, which Linux reports to the second and which
# can move by one between reads; the command line must match exactly as well
_START_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class Service:
    name: str
    url: str
    health: str
    pid: int
    cmdline: tuple[str, ...] = ()  # the process's command line, read when it was started
    create_time: float = 0.0  # its start time (psutil.Process.create_time)

    @classmethod
    def from_json(cls, info: dict[str, Any]) -> Service:
        return cls(**{**info, "cmdline": tuple(info.get("cmdline", ()))})


def identity(pid: int) -> tuple[tuple[str, ...], float] | None:
    """(command line, start time) of a live process; None when there is none (or a zombie)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return tuple(proc.cmdline()), proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_ours(service: Service) -> bool:
    """Is `service.pid` still the process that was started (same command line, start time)?"""
    live = identity(service.pid)
    return (
        live is not None
        and bool(service.cmdline)  # a record from before they were kept: cannot tell
        and live[0] == service.cmdline
        and abs(live[1] - service.create_time) <= _START_TOLERANCE_S
    )


def state_path(home: Path) -> Path:
    return home / "services" / "services.json"


def alive(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status < 500)
    except (urllib.error.URLError, OSError):
        return False


def running(home: Path) -> dict[str, Service]:
    """Services recorded as started and still answering."""
    path = state_path(home)
    if not path.exists():
        return {}
    found = {}
    for name, service in _load(path).items():
        if is_ours(service) and alive(service.health):
            found[name] = service
    return found


def _load(path: Path) -> dict[str, Service]:
    return {k: Service.from_json(v) for k, v in json.loads(path.read_text("utf-8")).items()}


def enable_wal(db: Path) -> None:
    """WAL lets readers and one writer work at once; the store is SQLite either way."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def _spawn(
    service: Service, args: list[str], logs: Path, env: dict[str, str]
) -> tuple[Service, subprocess.Popen[bytes]]:
    """Start a server meant to outlive this command (untied, in a session of its own);
    returns `service` with its pid, command line and start time filled in."""
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{service.name}.log", "ab") as fh:
        proc = start_child(args, env=env, log=fh, tied=False)
    # Popen returns once exec succeeded: the command line read now is the server's
    cmdline, created = identity(proc.pid) or ((), 0.0)
    return dataclasses.replace(service, pid=proc.pid, cmdline=cmdline, create_time=created), proc


def _wait(service: Service, proc: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if alive(service.health):
            return True
        time.sleep(1.0)
    return False


def start(home: Path, timeout_s: float = 240.0) -> dict[str, Service]:
    """Start both servers (those not already up) and wait until they answer.

    Raises:
        TunelineError: a server did not come up in time (its log file is named).
    """
    home = home.resolve()
    services = running(home)
    bindir = Path(sys.executable).parent
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(home / "prefect"))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)
    logs = home / "services"
    started: dict[str, subprocess.Popen[bytes]] = {}
    if "mlflow" not in services:
        db = home / "mlflow.db"
        enable_wal(db)
        url = f"http://127.0.0.1:{MLFLOW_PORT}"
        args = [
            str(bindir / "mlflow"),
            "server",
            # timeout= is SQLite's busy timeout: writers wait instead of "database is locked"
            "--backend-store-uri",
            f"sqlite:///{db}?timeout=30",
            "--artifacts-destination",
            str(home / "mlartifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(MLFLOW_PORT),
            "--workers",
            "1",
        ]
        services["mlflow"], started["mlflow"] = _spawn(
            Service("mlflow", url, f"{url}/health", 0), args, logs, {**env, **webhook_env(home)}
        )
    if "prefect" not in services:
        url = f"http://127.0.0.1:{PREFECT_PORT}"
        services["prefect"], started["prefect"] = _spawn(
            Service("prefect", url, f"{url}/api/health", 0),
            prefect_server.command(PREFECT_PORT, ephemeral=False),
            logs,
            {**env, **prefect_server.server_env(PREFECT_PORT, ephemeral=False)},
        )
    write_json(state_path(home), {k: dataclasses.asdict(v) for k, v in services.items()})
    for name, proc in started.items():
        if not _wait(services[name], proc, timeout_s):
            how = (
                "exited before answering (is its port taken?)"
                if proc.poll() is not None
                else f"did not answer within {timeout_s:.0f} s"
            )
            raise TunelineError(
                f"{name} {how} at {services[name].health}; see {logs / (name + '.log')}"
            )
    return services


def add_service(
    home: Path, service: Service, args: list[str], env: dict[str, str], timeout_s: float
) -> Service:
    """Start one more server beside the two (the webhook receiver), record it, wait for it.

    Raises:
        TunelineError: it did not answer in time (its log file is named).
    """
    home = home.resolve()
    if (found := running(home).get(service.name)) is not None:
        return found
    logs = home / "services"
    service, proc = _spawn(service, args, logs, env)
    path = state_path(home)
    recorded = _load(path) if path.exists() else {}
    write_json(
        path, {k: dataclasses.asdict(v) for k, v in {**recorded, service.name: service}.items()}
    )
    if not _wait(service, proc, timeout_s):
        log = logs / f"{service.name}.log"
        raise TunelineError(f"{service.name} did not answer at {service.health}; see {log}")
    return service


def stop(home: Path) -> dict[str, str]:
    """Stop the recorded servers (their whole process groups), those still ours only.

    Returns:
        What happened to each recorded server: "stopped", "not running", or "not ours, left
        alone" with what the pid is now.
    """
    path = state_path(home.resolve())
    if not path.exists():
        return {}
    outcome = {}
    for name, service in _load(path).items():
        if is_ours(service):
            stop_pid_group(service.pid)
            outcome[name] = "stopped"
        elif (live := identity(service.pid)) is None:
            outcome[name] = "not running"
        else:
            outcome[name] = (
                f"not ours, left alone (pid {service.pid} is now `{' '.join(live[0])[:120]}`)"
            )
    path.unlink()
    return outcome
