"""The servers of the stack (tuneline.stack): their commands, environments and start-up.

Every server is started untied (a session of its own, outliving `tuneline up`), its output in
stack/logs/<name>.log, and recorded with its command line and start time (tuneline.services
.Service) so `tuneline down` signals only a process that is still the one it started.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tuneline import prefect_server, services, stack_pg, stack_s3
from tuneline.errors import StackError
from tuneline.io import write_json
from tuneline.processes import start_child
from tuneline.services import Service

POOL = "tuneline-pool"  # infra/prefect.yaml's work_pool
WORKER = "tuneline-worker"
# the servers' own default ports, which the container files (infra/) use; the local stack picks
# free loopback ports instead: the embedded `tuneline up` holds 4200 and 5000, and tests and
# several projects run stacks side by side
CONTAINER_PORTS = {"postgres": 5432, "s3": 8333, "mlflow": 5000, "prefect": 4200}


def worker_command() -> list[str]:
    """The process worker on the pool (one flow run at a time: training takes every core)."""
    return [
        "prefect",
        "worker",
        "start",
        "--pool",
        POOL,
        "--type",
        "process",
        "--name",
        WORKER,
        "--limit",
        "1",
    ]


def stack_dir(home: Path) -> Path:
    return home.resolve() / "stack"


def client_env(ports: dict[str, int]) -> dict[str, str]:
    """What a process sets to work on the stack: the tuneline settings and S3 credentials."""
    s3 = f"http://127.0.0.1:{ports['s3']}"
    return {
        "TUNELINE_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
        "TUNELINE_PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api",
        "PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api",
        "TUNELINE_DVC_REMOTE": f"s3://{stack_s3.BUCKET}/{stack_s3.DVC_PREFIX}",
        "AWS_ENDPOINT_URL": s3,
        "AWS_ACCESS_KEY_ID": stack_s3.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": stack_s3.SECRET_KEY,
        "AWS_DEFAULT_REGION": stack_s3.REGION,
    }


def free_ports() -> dict[str, int]:
    names = [*stack_s3.PORT_NAMES, *(f"{n}.grpc" for n in stack_s3.PORT_NAMES)]
    names += ["postgres", "mlflow", "prefect"]
    ports: dict[str, int] = {}
    while len(ports) < len(names):
        port = prefect_server.free_port()
        if port not in ports.values():
            ports[names[len(ports)]] = port
    return ports


def spawn(
    name: str,
    args: list[str],
    health: str,
    env: dict[str, str],
    logs: Path,
    cwd: Path | None = None,
) -> Service:
    """A server meant to outlive this command (a session of its own, not tied to us)."""
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as fh:
        proc = start_child(args, env=env, log=fh, cwd=cwd, tied=False)
    return Service(name, health.rsplit("/", 1)[0], health, proc.pid, *settled(proc.pid, args))


def settled(pid: int, args: list[str], seconds: float = 10.0) -> tuple[tuple[str, ...], float]:
    """(command line, start time) of `pid` once /proc shows `args` (a console script shows
    its interpreter first). On a loaded machine a process read just after exec can show an
    empty command line, and a record with none is never taken for ours: never stopped.
    """
    deadline = time.monotonic() + seconds
    while True:
        live = services.identity(pid)
        if live is not None and tuple(live[0][-len(args) + 1 :]) == tuple(args[1:]):
            return live
        if live is None or time.monotonic() > deadline:
            return live or ((), 0.0)
        time.sleep(0.1)


def wait_http(service: Service, seconds: float, logs: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if services.alive(service.health):
            return
        if services.identity(service.pid) is None:
            break
        time.sleep(1.0)
    raise StackError(
        f"{service.name} did not answer at {service.health}; see {logs / (service.name + '.log')}"
    )


def prefect_cli(args: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> str:
    """The Prefect CLI against the stack's server (work pools, deployments)."""
    cmd = [str(Path(sys.executable).parent / "prefect"), "--no-prompt", *args]
    proc = subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stdout[-1500:] + proc.stderr[-1500:]).strip()
        raise StackError(f"`prefect {' '.join(args)}` failed: {tail}")
    return proc.stdout


def worker_env(home: Path, project: Path, client: dict[str, str]) -> dict[str, str]:
    """The worker's environment (its flow runs inherit it): the stack's endpoints, the project,
    and flow-run heartbeats for the zombie automation."""
    return (
        base_env(home)
        | client
        | {
            "TUNELINE_PROJECT_DIR": str(project),
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
        }
    )


def base_env(home: Path) -> dict[str, str]:
    """The servers' and the worker's base environment: ours, quiet, no caller's API URL."""
    env = dict(os.environ)
    for key in ("PREFECT_API_URL", "TUNELINE_PREFECT_API_URL", "TUNELINE_MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    env |= {
        "PREFECT_HOME": str(stack_dir(home) / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "TUNELINE_HOME": str(home.resolve()),
    }
    return env


def mlflow_command(ports: dict[str, int]) -> list[str]:
    """MLflow's tracking server on the `mlflow` database, artifacts proxied to S3."""
    return [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        # SQLAlchemy 2.1 reads plain postgresql:// as psycopg 3; the lock has psycopg2
        stack_pg.url(ports["postgres"], "mlflow", "postgresql+psycopg2"),
        "--artifacts-destination",
        f"s3://{stack_s3.BUCKET}/{stack_s3.MLFLOW_PREFIX}",
        "--host",
        "127.0.0.1",
        "--port",
        str(ports["mlflow"]),
        "--workers",
        "1",
    ]


def register_servers(home: Path, found: dict[str, Service]) -> None:
    """Record MLflow and Prefect where `tuneline.services.running` looks for them."""
    path = services.state_path(home)
    known = json.loads(path.read_text("utf-8")) if path.exists() else {}
    known |= {name: dataclasses.asdict(found[name]) for name in ("mlflow", "prefect")}
    write_json(path, known)


def unregister_servers(home: Path, found: dict[str, Service]) -> None:
    path = services.state_path(home)
    if not path.exists():
        return
    known = json.loads(path.read_text("utf-8"))
    for name in ("mlflow", "prefect"):
        if name in known and name in found and known[name]["pid"] == found[name].pid:
            del known[name]
    write_json(path, known) if known else path.unlink()


HEARTBEAT_S = 30  # flow runs of the worker send a heartbeat event this often (Prefect's minimum)
ZOMBIE_AFTER_S = 300  # a run silent this long is marked Crashed (90 s, the docs' figure, crashed
# a healthy run on 2 cores at load 20: a heartbeat came 2 min late)


def create_zombie_automation() -> None:
    """The automation Prefect documents for self-hosted servers ("detect zombie flows"): a
    flow run whose heartbeats stop (its worker or machine died) is set Crashed, so a rerun
    can start. Needs PREFECT_API_URL; run by `python -m tuneline.stack_servers`."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    Automation(
        name="tuneline: crash silent flow runs",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=ZOMBIE_AFTER_S),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {ZOMBIE_AFTER_S} s: its worker or machine died",
            )
        ],
    ).create()


if __name__ == "__main__":
    create_zombie_automation()
