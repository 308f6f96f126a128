"""The pipeline on the server stack: a work-pool deployment, a PostgreSQL registry, S3 storage.

In order, as an operator would: register the deployments (`prefect deploy --prefect-file
infra/prefect.yaml`), trigger a training run through the Prefect REST API, let the stack's
process worker pick it up; the run must end with a champion in the registry MLflow keeps in
PostgreSQL, the champion's artifacts in the S3 bucket and every data split in the DVC remote
on the same store. Then two faults: S3 down during `dvc push` (a one-line error, and a rerun
leaves a remote whose every object matches its hash), PostgreSQL restarted while registry
writes are going on (they retry; every version is whole).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.stack.conftest import api, trigger, wait_final

pytestmark = [pytest.mark.stack, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def trained(deployed: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    run_id = trigger(deployed, "tuneline-training", "tuneline-training")
    run = wait_final(deployed, run_id, 3000)
    print(f"\ndeployment run: {run['state_type']} in {time.monotonic() - started:.0f} s")
    return {**deployed, "run": run}


def test_the_three_deployments_are_on_the_pool(deployed: dict[str, Any]) -> None:
    found = httpx.post(f"{api(deployed)}/deployments/filter", json={}, timeout=30).json()
    pools = {d["name"]: d["work_pool_name"] for d in found}
    assert pools == {
        "tuneline-training": "tuneline-pool",
        "tuneline-retraining": "tuneline-pool",
        "tuneline-promotion": "tuneline-pool",
    }


def test_a_run_on_the_worker_promotes_a_champion_in_postgres(trained: dict[str, Any]) -> None:
    import psycopg2
    from mlflow import MlflowClient

    from tuneline import stack_pg
    from tuneline.config import load_params

    run = trained["run"]
    assert run["state_type"] == "COMPLETED", run["state"]
    name = load_params(trained["project"]).gate.registered_model
    client = MlflowClient(trained["state"]["env"]["TUNELINE_MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias(name, "champion")
    # the alias is a row of the PostgreSQL database behind the tracking server
    with psycopg2.connect(stack_pg.url(trained["state"]["ports"]["postgres"], "mlflow")) as db:
        cur = db.cursor()
        cur.execute(
            "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = %s",
            (name, "champion"),
        )
        assert cur.fetchall() == [(int(champion.version),)]
    assert champion.tags["data_md5_test"]


def test_the_champion_artifacts_are_in_the_bucket(trained: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    from tuneline import stack_s3
    from tuneline.config import load_params

    env = trained["state"]["env"]
    client = MlflowClient(env["TUNELINE_MLFLOW_TRACKING_URI"])
    name = load_params(trained["project"]).gate.registered_model
    champion = client.get_model_version_by_alias(name, "champion")
    keys = stack_s3.list_keys(env["AWS_ENDPOINT_URL"], stack_s3.MLFLOW_PREFIX + "/")
    # the registered model (MLflow 3: a logged model, source models:/m-...) and the variant run
    # that exported it: both their ONNX files are objects of the bucket
    model_id = champion.source.removeprefix("models:/")
    logged = client.get_logged_model(model_id)
    assert logged.artifact_location.startswith("mlflow-artifacts:/"), logged.artifact_location
    for owner in (f"/models/{model_id}/", f"/{champion.tags['variant_run_id']}/"):
        mine = [k for k in keys if owner in k]
        assert any(k.endswith(".onnx") for k in mine), (owner, mine[:20])
    # and nothing went to a local artifact directory
    assert not (trained["home"] / "mlartifacts").exists()


def uncached(project: Path) -> set[str]:
    """Outputs dvc.yaml keeps in git (`cache: false`, e.g. stats.json): never pushed."""
    found = set()
    for stage in yaml.safe_load((project / "dvc.yaml").read_text())["stages"].values():
        for entry in [*stage.get("outs", []), *stage.get("metrics", [])]:
            if isinstance(entry, dict):
                found |= {path for path, opts in entry.items() if opts.get("cache") is False}
    return found


def lock_outs(project: Path) -> dict[str, str]:
    """path -> md5 of every output dvc.lock records that DVC caches (and so pushes)."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    skip = uncached(project)
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if out["path"] not in skip
    }


def remote_key(md5: str) -> str:
    return f"dvc/files/md5/{md5[:2]}/{md5[2:]}"


def test_every_data_version_is_in_the_s3_remote(trained: dict[str, Any]) -> None:
    from tuneline import stack_s3

    keys = set(stack_s3.list_keys(trained["state"]["env"]["AWS_ENDPOINT_URL"], "dvc/"))
    outs = lock_outs(trained["project"])
    assert any(p.startswith("data/prepared") for p in outs)
    assert "data/prepared/stats.json" not in outs  # git-tracked, not a DVC object
    missing = {p: md5 for p, md5 in outs.items() if remote_key(md5) not in keys}
    assert not missing, f"not in s3://tuneline/dvc: {missing}"


def test_s3_down_during_dvc_push_is_one_clear_error_and_a_rerun_heals(
    trained: dict[str, Any],
) -> None:
    from tasks.data.dvc_stages import push_dataset
    from tuneline import stack, stack_s3
    from tuneline.errors import TunelineError

    project, home = trained["project"], trained["home"]
    extra = project / "data" / "extra.txt"
    extra.write_text("a file only this push uploads\n" * 1000)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "add", "-q", str(extra)], cwd=project, check=True, timeout=300)
    stack.stop_service(home, "s3")
    try:
        started = time.monotonic()
        with pytest.raises(TunelineError, match="dvc push failed") as err:
            push_dataset.fn(project)
        assert time.monotonic() - started < 300
        assert "Traceback" not in str(err.value)
    finally:
        stack.start_service(home, "s3")
    assert push_dataset.fn(project) == "s3://tuneline/dvc"
    md5 = hashlib.md5(extra.read_bytes()).hexdigest()
    env = trained["state"]["env"]
    s3 = stack_s3.client(env["AWS_ENDPOINT_URL"])
    # every file object of the remote holds exactly the bytes its key names
    for key in stack_s3.list_keys(env["AWS_ENDPOINT_URL"], "dvc/files/md5/"):
        if key.endswith(".dir"):
            continue
        body = s3.get_object(Bucket=stack_s3.BUCKET, Key=key)["Body"].read()
        assert hashlib.md5(body).hexdigest() == key.split("/")[-2] + key.split("/")[-1], key
    assert remote_key(md5) in stack_s3.list_keys(env["AWS_ENDPOINT_URL"], "dvc/")
    status = subprocess.run(
        [*dvc, "status", "-c", "-r", "local", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # {} = every cached object is in the remote (the wording of the text form changes by version)
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout


def test_registry_writes_survive_a_postgres_restart(trained: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    from tuneline import stack
    from tuneline.registry import with_retries

    home = trained["home"]
    client = MlflowClient(trained["state"]["env"]["TUNELINE_MLFLOW_TRACKING_URI"])
    name = "stack-restart-probe"
    with_retries(lambda: client.create_registered_model(name))
    created: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def create(i: int) -> str:
        version = client.create_model_version(
            name, f"s3://tuneline/probe/{i}", tags={"i": str(i), "whole": "yes"}
        )
        return str(version.version)

    def write() -> None:
        for i in range(200):
            if stop.is_set():
                return
            try:
                created.append(with_retries(lambda i=i: create(i), attempts=8, delay_s=1.0))
            except BaseException as exc:  # recorded: the assertion below names it
                errors.append(exc)
                return

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(3)
    stack.stop_service(home, "postgres")
    time.sleep(3)  # writes fail (and retry) while the database is down
    stack.start_service(home, "postgres")
    time.sleep(3)
    stop.set()
    writer.join(300)
    assert not errors, errors
    assert len(created) >= 2
    versions = client.search_model_versions(f"name = '{name}'")
    # a retried call may have landed twice; none may be missing, none half-written
    assert {int(v) for v in created} <= {int(v.version) for v in versions}
    for v in versions:  # no version without its tags or source: each is one transaction
        assert v.tags.get("whole") == "yes" and v.source.endswith("/" + v.tags["i"]), v
