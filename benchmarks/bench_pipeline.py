"""Pipeline wall time: a cold run, a cached rerun, and Prefect's orchestration overhead.

Runs the real training flow in a fresh copy of the project (its own TUNELINE_HOME, so nothing
is cached at the start except verified downloads), then runs it again unchanged.

    .venv/bin/python benchmarks/bench_pipeline.py [--profile default|smoke]

orchestration overhead = (flow wall - sum of task compute) / flow wall, where task compute is
each task run's own run time as Prefect recorded it and flow wall is the flow run's run time
(both exclude the start of Prefect's local server, which is reported separately).
Writes benchmarks/results/pipeline.json and pipeline.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"


async def task_times(flow_run_id: Any) -> dict[str, float]:
    """Seconds of each task run (and subflow) of a flow run, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        flow_run = await client.read_flow_run(flow_run_id)
    times = {f"{r.name}": r.total_run_time.total_seconds() for r in runs}
    times["__flow__"] = flow_run.total_run_time.total_seconds()
    return times


def one_run(project: Path) -> dict[str, Any]:
    from flows.training import training_flow

    started = time.perf_counter()
    state = training_flow(project_root=str(project), return_state=True)
    process_wall = time.perf_counter() - started
    summary = state.result()
    times = asyncio.run(task_times(state.state_details.flow_run_id))
    flow_wall = times.pop("__flow__")
    compute = sum(times.values())
    overhead = (flow_wall - compute) / flow_wall if flow_wall else None
    return {
        "process_wall_s": round(process_wall, 2),
        "flow_wall_s": round(flow_wall, 2),
        "task_compute_s": round(compute, 2),
        "orchestration_overhead": round(overhead, 4) if overhead is not None else None,
        "tasks_s": {k: round(v, 2) for k, v in sorted(times.items(), key=lambda kv: -kv[1])},
        "gate": summary.extra.get("gate", ""),
        "metrics": summary.extra.get("test metrics (PyTorch)", ""),
        "chosen": summary.extra.get("chosen variant", ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    args = parser.parse_args()
    from tests.conftest import make_workspace

    work = Path(tempfile.mkdtemp(prefix="tuneline-bench-"))
    os.environ["TUNELINE_HOME"] = str(work / "home")
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    from flows.cli import prefect_env

    prefect_env()
    project = make_workspace(work / "project", profile=args.profile)
    t0 = time.perf_counter()
    from prefect.testing.utilities import prefect_test_harness  # one local server, started once

    with prefect_test_harness(server_startup_timeout=300):
        server_s = time.perf_counter() - t0
        cold = one_run(project)
        cached = one_run(project)
    result = {
        "profile": args.profile,
        "machine": f"{os.cpu_count()} CPU cores",
        "prefect_server_start_s": round(server_s, 2),
        "cold": cold,
        "cached": cached,
        "cached_over_cold": round(cached["process_wall_s"] / cold["process_wall_s"], 4),
        "targets": {"cold_s": 600, "cached_over_cold": 0.10, "orchestration_overhead": 0.05},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "pipeline" if args.profile == "default" else f"pipeline-{args.profile}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Pipeline wall time ({args.profile} profile, {result['machine']})",
        "",
        "| run | process wall s | flow wall s | task compute s | orchestration overhead |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label in ("cold", "cached"):
        r = result[label]
        lines.append(
            f"| {label} | {r['process_wall_s']} | {r['flow_wall_s']} | {r['task_compute_s']} | "
            f"{r['orchestration_overhead']:.2%} |"
        )
    lines += [
        "",
        f"cached / cold = {result['cached_over_cold']:.2%} (target <= 10 %); "
        f"Prefect local server start {server_s:.1f} s (once per process).",
        "",
        "Slowest tasks (cold): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in list(cold["tasks_s"].items())[:6]),
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
