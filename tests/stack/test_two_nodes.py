"""Two torchrun agents on loopback (train.nnodes 2, c10d rendezvous on 127.0.0.1, one process
each) train one model whose loss curve follows one node's with the same global batch
(16 = 1 x 16 = 2 nodes x 8), within the DDP test's tolerance (tests/integration/test_finetune.py:
dropout off, differences are float summation order). Only node 0 writes: one MLflow run on the
stack's PostgreSQL-backed server, checkpoints and the model in node 0's output only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.integration.test_finetune import DDP_LOSS_ATOL, make_project

pytestmark = [pytest.mark.stack, pytest.mark.timeout(1800)]

COMMON = {
    "train.nproc": 1,
    "train.dropout": 0.0,
    "train.max_steps": 20,
    "train.logging_steps": 2,
    "train.num_threads": 1,
}


def start_node(tmp: Path, name: str, prepared: Path, overrides: dict[str, Any]) -> Any:
    spec = tmp / f"{name}.json"
    spec.write_text(
        json.dumps(
            {
                "prepared": str(prepared),
                "output_dir": str(tmp / name),
                "project": str(tmp / "project"),
                "overrides": {**COMMON, **overrides},
                "result": str(tmp / f"{name}-result.json"),
            }
        )
    )
    env = {**os.environ, "TUNELINE_HOME": str(tmp / f"home-{name}")}
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed when the test ends
    return subprocess.Popen(
        [sys.executable, "-m", "tests.stack.node", str(spec)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def finish(procs: dict[str, Any], tmp: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    try:
        for name, proc in procs.items():
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            assert rc == 0, (tmp / f"{name}.log").read_text()[-4000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def loss_curve(run_id: str) -> list[float]:
    from mlflow import MlflowClient

    history = MlflowClient(os.environ["TUNELINE_MLFLOW_TRACKING_URI"]).get_metric_history(
        run_id, "loss"
    )
    assert sorted(m.step for m in history) == list(range(2, 21, 2))  # node 0 alone logged
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def test_two_nodes_follow_one_node(stack: dict[str, Any]) -> None:
    from tuneline.prefect_server import free_port

    tmp = Path(stack["home"]).parent / "two-nodes"  # a directory torchrun's workers all reach
    tmp.mkdir()
    prepared = make_project(tmp / "project")
    one = {"one": start_node(tmp, "one", prepared, {})}
    finish(one, tmp, 900)
    endpoint = f"127.0.0.1:{free_port()}"
    layout = {"train.nnodes": 2, "train.rdzv_endpoint": endpoint}
    nodes = {
        f"node{rank}": start_node(tmp, f"node{rank}", prepared, {**layout, "train.node_rank": rank})
        for rank in (0, 1)
    }
    finish(nodes, tmp, 900)
    single = json.loads((tmp / "one-result.json").read_text())["run_id"]
    node0 = json.loads((tmp / "node0-result.json").read_text())["run_id"]
    assert json.loads((tmp / "node1-result.json").read_text())["run_id"] == ""
    done = json.loads((tmp / "node0" / "train_result.json").read_text())
    assert done["world_size"] == 2
    # node 1 trained but wrote no model, result or checkpoint: under checkpoints/ only the
    # per-rank RNG state the HF Trainer saves on every rank (rng_state_1.pth), for resuming
    node1 = {p.name for p in (tmp / "node1").iterdir()}
    assert not node1 & {"model", "train_result.json"}, node1
    kept = {p.name for p in (tmp / "node1").glob("checkpoints/*/*")}
    assert kept <= {"rng_state_1.pth"}, kept
    assert (tmp / "node0" / "model" / "model.safetensors").is_file()
    curves = {"one": loss_curve(single), "two": loss_curve(node0)}
    worst = max(abs(a - b) for a, b in zip(curves["one"], curves["two"], strict=True))
    assert worst <= DDP_LOSS_ATOL, f"loss curves differ by {worst:.2e}: {curves}"
    assert curves["one"][0] != curves["one"][-1]  # the curve moved
