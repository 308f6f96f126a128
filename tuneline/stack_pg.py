"""The server stack's PostgreSQL: a private cluster (initdb + pg_ctl), no system service.

The cluster lives under the stack's state directory and listens on 127.0.0.1 only, with its
Unix socket in its own data directory. `initdb` and the server refuse to run as root, so as
root every PostgreSQL program runs as the `postgres` system user (`runuser`); the data
directory is then owned by that user, and every directory above it must let it pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tuneline.errors import StackError

USER = "tuneline"  # the cluster's superuser; `-A trust` on loopback, no password
DATABASES = ("mlflow", "prefect")
OS_USER = "postgres"  # who runs the cluster when we are root


def bin_dir() -> Path:
    """The newest PostgreSQL under /usr/lib/postgresql (the Debian layout), else PATH.

    Raises:
        StackError: PostgreSQL is not installed (`apt-get install postgresql`).
    """
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise StackError("PostgreSQL is not installed: apt-get install postgresql (15 or newer)")


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", OS_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], what: str, timeout_s: float) -> str:
    proc = subprocess.run(
        _as_owner(cmd), capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if proc.returncode != 0:
        raise StackError(f"{what} failed: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc.stdout


def init_cluster(data: Path) -> None:
    """`initdb` into `data` unless a cluster is there already (kept across up/down).

    Raises:
        StackError: initdb failed, or the `postgres` user cannot reach `data`.
    """
    if (data / "PG_VERSION").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data, OS_USER, OS_USER)
        probe = subprocess.run(["runuser", "-u", OS_USER, "--", "test", "-w", str(data)])
        if probe.returncode != 0:
            raise StackError(
                f"the '{OS_USER}' user cannot reach {data}: a directory above it is private "
                "(mode 0700); set TUNELINE_HOME to a directory it can pass through"
            )
    _run(
        [str(bin_dir() / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "-N"],
        "initdb",
        120,
    )


def start_cluster(data: Path, port: int, log: Path, timeout_s: float) -> int:
    """Start the cluster on 127.0.0.1:`port` and wait until it accepts connections.

    Returns:
        The postmaster's pid.

    Raises:
        StackError: pg_ctl failed (its log is named).
    """
    if os.geteuid() == 0 and not log.exists():
        log.touch()
        shutil.chown(log, OS_USER, OS_USER)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    _run(
        [
            str(bin_dir() / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout_s)),
            "start",
        ],
        f"PostgreSQL start (see {log})",
        timeout_s + 10,
    )
    return postmaster_pid(data) or 0


def postmaster_pid(data: Path) -> int | None:
    """The running postmaster's pid from postmaster.pid; None when the cluster is down."""
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop_cluster(data: Path, mode: str = "fast") -> None:
    """`pg_ctl stop` (fast: open sessions are rolled back); nothing when it is down."""
    if postmaster_pid(data) is None:
        return
    _run([str(bin_dir() / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"], "pg_ctl stop", 90)


def restart_cluster(data: Path, port: int, log: Path) -> int:
    """Stop (fast) and start again on the same port: what the PostgreSQL fault test does."""
    stop_cluster(data)
    return start_cluster(data, port, log, 60)


def url(port: int, database: str, driver: str = "postgresql") -> str:
    return f"{driver}://{USER}@127.0.0.1:{port}/{database}"


def create_databases(port: int, timeout_s: float = 30.0) -> None:
    """CREATE DATABASE for each of DATABASES not there yet.

    Raises:
        StackError: the cluster did not accept a connection within `timeout_s`.
    """
    import psycopg2

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = psycopg2.connect(url(port, "postgres"))
            break
        except psycopg2.OperationalError as exc:
            if time.monotonic() > deadline:
                raise StackError(f"PostgreSQL on 127.0.0.1:{port} refused: {exc}") from exc
            time.sleep(0.5)
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            have = {row[0] for row in cur.fetchall()}
            for name in DATABASES:
                if name not in have:
                    cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
