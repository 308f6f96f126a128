"""`tuneline up` / `tuneline down`: a local Prefect server and MLflow tracking server.

Both bind 127.0.0.1 and keep their state under TUNELINE_HOME. While they run, other commands
use them (their URLs are recorded in services.json); when they are down, the embedded defaults
(ephemeral Prefect, the sqlite file store) are used.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tuneline.errors import TunelineError
from tuneline.io import write_json

PREFECT_PORT = 4200
MLFLOW_PORT = 5000


@dataclass(frozen=True)
class Service:
    name: str
    url: str
    health: str
    pid: int


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
    for name, info in json.loads(path.read_text("utf-8")).items():
        service = Service(**info)
        if alive(service.health):
            found[name] = service
    return found


def enable_wal(db: Path) -> None:
    """WAL lets readers and one writer work at once; the store is SQLite either way."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            args, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return proc.pid


def _wait(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if alive(url):
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
    if "mlflow" not in services:
        db = home / "mlflow.db"
        enable_wal(db)
        url = f"http://127.0.0.1:{MLFLOW_PORT}"
        pid = _spawn(
            [
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
            ],
            logs / "mlflow.log",
            env,
        )
        services["mlflow"] = Service("mlflow", url, f"{url}/health", pid)
    if "prefect" not in services:
        url = f"http://127.0.0.1:{PREFECT_PORT}"
        pid = _spawn(
            [
                str(bindir / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(PREFECT_PORT),
            ],
            logs / "prefect.log",
            env,
        )
        services["prefect"] = Service("prefect", url, f"{url}/api/health", pid)
    write_json(state_path(home), {k: v.__dict__ for k, v in services.items()})
    for service in services.values():
        if not _wait(service.health, timeout_s):
            raise TunelineError(
                f"{service.name} did not answer at {service.health} within {timeout_s:.0f} s; "
                f"see {logs / (service.name + '.log')}"
            )
    return services


def stop(home: Path) -> list[str]:
    """Stop the recorded servers (their whole process groups); returns the names stopped."""
    path = state_path(home.resolve())
    if not path.exists():
        return []
    stopped = []
    for name, info in json.loads(path.read_text("utf-8")).items():
        try:
            os.killpg(info["pid"], signal.SIGTERM)
            stopped.append(name)
        except (ProcessLookupError, PermissionError):
            continue
    path.unlink()
    return stopped
