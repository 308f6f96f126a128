"""`tuneline up --stack server`: the engines a team runs, on this machine, on 127.0.0.1.

PostgreSQL (a private cluster, tuneline.stack_pg), an S3 store with a bucket (SeaweedFS,
tuneline.stack_s3), an MLflow tracking server on PostgreSQL with its artifacts proxied to
s3://tuneline/mlflow, a Prefect server on PostgreSQL, the work pool `tuneline-pool` and one
process worker that runs in the project. Every port is free-picked; the state (cluster, store,
logs, stack.json) lives under TUNELINE_HOME/stack. `tuneline down` stops all of it.

The MLflow and Prefect servers are also recorded where the embedded `tuneline up` records its
own (tuneline.services), so every tuneline command uses them while the stack runs. The worker,
and whoever else should reach the stores, gets `stack_servers.client_env` (also in
stack/env.sh).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneline import prefect_server, services, stack_pg, stack_s3
from tuneline import stack_servers as srv
from tuneline.errors import StackError, TunelineError
from tuneline.io import write_json
from tuneline.processes import stop_pid_group
from tuneline.services import Service

KIND = "server"  # `tuneline up --stack server`; the default stack is "embedded"


def state_path(home: Path) -> Path:
    return srv.stack_dir(home) / "stack.json"


def load(home: Path) -> dict[str, Any] | None:
    """The recorded stack (services, ports, env, data dirs); None when none was started."""
    path = state_path(home)
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text("utf-8"))
    state["services"] = {k: Service.from_json(v) for k, v in state["services"].items()}
    return state


def _save(home: Path, state: dict[str, Any]) -> None:
    plain = {**state, "services": {k: dataclasses.asdict(v) for k, v in state["services"].items()}}
    write_json(state_path(home), plain)


def start(home: Path, project: Path, timeout_s: float = 240.0) -> dict[str, Any]:
    """Bring the whole stack up (or return the one already running) and wait for each server.

    Args:
        home: TUNELINE_HOME; the stack's state goes to `home/stack`.
        project: the directory the worker runs flows in (TUNELINE_PROJECT_DIR).
        timeout_s: seconds to wait for each server.

    Returns:
        The recorded state: services, ports, client env.

    Raises:
        StackError: a server did not come up (its log is named; what started is stopped), or
            the embedded servers of `tuneline up` are running.
    """
    home, project = home.resolve(), project.resolve()
    current = load(home)
    if current is not None:
        if all(services.is_ours(s) for s in current["services"].values()):
            return current
        stop(home)  # half a stack (a crash, a reboot): start over
    if services.running(home):
        raise StackError("the embedded servers of `tuneline up` are running: `tuneline down` first")
    ports, base = srv.free_ports(), srv.base_env(home)
    root, logs = srv.stack_dir(home), srv.stack_dir(home) / "logs"
    state: dict[str, Any] = {
        "kind": KIND,
        "ports": ports,
        "env": srv.client_env(ports),
        "pg_data": str(root / "postgres"),
        "project": str(project),
        "services": {},
    }
    try:
        _start_all(home, project, state, base, logs, timeout_s)
    except BaseException:
        stop(home)
        raise
    return state


def _start_all(
    home: Path,
    project: Path,
    state: dict[str, Any],
    base: dict[str, str],
    logs: Path,
    timeout_s: float,
) -> None:
    ports, env, found = state["ports"], state["env"], state["services"]
    root = srv.stack_dir(home)
    logs.mkdir(parents=True, exist_ok=True)
    pg_data = Path(state["pg_data"])
    stack_pg.init_cluster(pg_data)
    pid = stack_pg.start_cluster(pg_data, ports["postgres"], logs / "postgres.log", timeout_s)
    cmdline, created = services.identity(pid) or ((), 0.0)
    found["postgres"] = Service(
        "postgres", stack_pg.url(ports["postgres"], "postgres"), "", pid, cmdline, created
    )
    _save(home, state)
    stack_pg.create_databases(ports["postgres"])
    identity = stack_s3.write_identity(root / "s3-identity.json")
    (root / "s3").mkdir(parents=True, exist_ok=True)
    s3_url = env["AWS_ENDPOINT_URL"]
    found["s3"] = srv.spawn(
        "s3", stack_s3.command(root / "s3", ports, identity), f"{s3_url}/status", base, logs
    )
    _save(home, state)
    stack_pg_env = (
        base
        | {"MLFLOW_S3_ENDPOINT_URL": s3_url}
        | {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    )
    mlflow_url = env["TUNELINE_MLFLOW_TRACKING_URI"]
    found["mlflow"] = srv.spawn(
        "mlflow", srv.mlflow_command(ports), f"{mlflow_url}/health", stack_pg_env, logs
    )
    prefect_env = (
        base
        | prefect_server.server_env(ports["prefect"], ephemeral=False)
        | {
            "PREFECT_API_DATABASE_CONNECTION_URL": stack_pg.url(
                ports["postgres"], "prefect", "postgresql+asyncpg"
            )
        }
    )
    found["prefect"] = srv.spawn(
        "prefect",
        prefect_server.command(ports["prefect"], ephemeral=False),
        f"{env['PREFECT_API_URL']}/health",
        prefect_env,
        logs,
    )
    _save(home, state)
    stack_s3.ensure_bucket(s3_url, timeout_s)
    for name in ("mlflow", "prefect"):
        srv.wait_http(found[name], timeout_s, logs)
    worker_env = srv.worker_env(home, project, env)
    srv.prefect_cli(
        ["work-pool", "create", srv.POOL, "--type", "process", "--overwrite"],
        worker_env,
        project,
        timeout_s,
    )
    made = subprocess.run(
        [sys.executable, "-m", "tuneline.stack_servers"],
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if made.returncode != 0:
        raise StackError(f"the zombie-run automation was refused: {made.stderr[-1500:]}")
    found["worker"] = srv.spawn(
        "worker",
        [str(Path(sys.executable).parent / "prefect"), *srv.worker_command()[1:]],
        f"{env['PREFECT_API_URL']}/health",
        worker_env,
        logs,
        cwd=project,
    )
    _save(home, state)
    srv.register_servers(home, found)
    (root / "env.sh").write_text(
        "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()), encoding="utf-8"
    )


def stop(home: Path) -> dict[str, str]:
    """Stop every server of the stack, the worker first and PostgreSQL last.

    Returns:
        What happened to each: "stopped", "not running", or "not ours, left alone".
    """
    state = load(home)
    if state is None:
        return {}
    found: dict[str, Service] = state["services"]
    outcome: dict[str, str] = {}
    for name in ("worker", "prefect", "mlflow", "s3"):
        if name not in found:
            continue
        service = found[name]
        if services.is_ours(service):
            stop_pid_group(service.pid, grace_s=20.0)
            outcome[name] = "stopped"
        else:
            outcome[name] = (
                "not running"
                if services.identity(service.pid) is None
                else ("not ours, left alone")
            )
    if "postgres" in found:
        pg_data = Path(state["pg_data"])
        running = stack_pg.postmaster_pid(pg_data) is not None
        stack_pg.stop_cluster(pg_data)
        outcome["postgres"] = "stopped" if running else "not running"
    srv.unregister_servers(home, found)
    state_path(home).unlink()
    return outcome


def start_cli(
    kind: str,
    home: Path,
    project: Path,
    timeout_s: float,
    echo: Callable[[str], Any],
    fail: Callable[[TunelineError], Any],
) -> None:
    """What `tuneline up --stack KIND` does past the embedded default: start and report.

    Args:
        kind: the --stack value; only "server" is a stack of this module.
        home: TUNELINE_HOME.
        project: the project the worker runs flows in.
        timeout_s: seconds to wait for each server.
        echo: prints a line.
        fail: reports a named error and exits.
    """
    if kind != KIND:
        fail(StackError(f"--stack {kind}: unknown (embedded or server)"))
        return
    try:
        state = start(home, project, timeout_s)
    except TunelineError as exc:
        fail(exc)
        return
    env = state["env"]
    echo(f"postgres  127.0.0.1:{state['ports']['postgres']} (databases mlflow, prefect)")
    echo(f"s3        {env['AWS_ENDPOINT_URL']} (bucket {stack_s3.BUCKET})")
    echo(f"mlflow    UI: {env['TUNELINE_MLFLOW_TRACKING_URI']}")
    echo(f"prefect   UI: {env['PREFECT_API_URL'].removesuffix('/api')}")
    echo(f"worker    pool {srv.POOL}, runs flows in {state['project']}")
    echo(f"environment for other shells: source {srv.stack_dir(home) / 'env.sh'}")
    echo("tuneline commands now use these servers; `tuneline down` stops them.")


def stop_service(home: Path, name: str) -> None:
    """Stop one server of the stack (s3, postgres, worker), keeping its record: a fault."""
    state = _require(home)
    if name == "postgres":
        stack_pg.stop_cluster(Path(state["pg_data"]))
    elif services.is_ours(state["services"][name]):
        stop_pid_group(state["services"][name].pid, grace_s=20.0)


def start_service(home: Path, name: str, timeout_s: float = 120.0) -> None:
    """Start again a server `stop_service` stopped, on the same port and data.

    Raises:
        StackError: no stack is recorded, or the server did not come back.
    """
    state = _require(home)
    old: Service = state["services"][name]
    logs = srv.stack_dir(home) / "logs"
    if name == "postgres":
        pid = stack_pg.start_cluster(
            Path(state["pg_data"]), state["ports"]["postgres"], logs / "postgres.log", timeout_s
        )
        cmdline, created = services.identity(pid) or ((), 0.0)
        fresh = dataclasses.replace(old, pid=pid, cmdline=cmdline, create_time=created)
    elif name in ("s3", "worker"):
        project = Path(state["project"])
        env = srv.base_env(home) if name == "s3" else srv.worker_env(home, project, state["env"])
        fresh = srv.spawn(name, list(old.cmdline), old.health, env, logs, cwd=project)
    else:
        raise StackError(f"restarting '{name}' is not supported (s3, postgres, worker)")
    state["services"][name] = fresh
    _save(home, state)
    if name == "s3":
        stack_s3.ensure_bucket(state["env"]["AWS_ENDPOINT_URL"], timeout_s)


def _require(home: Path) -> dict[str, Any]:
    state = load(home)
    if state is None:
        raise StackError(f"no server stack is recorded under {srv.stack_dir(home)}")
    return state
