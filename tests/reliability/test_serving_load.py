"""A served Bento under load: steady, 3x overload, a burst, recovery; HTTP vs in-process
throughput; adaptive batching on vs off (slow; `make reliability`).

The server is pinned to CPU 0 and the generator (benchmarks/load_serving.py) to CPU 1 where
the OS allows. Required: no 5xx server error (500/502/504) in any phase, overload shed as
429/503, p99 of accepted requests bounded, full recovery. The efficiency targets of the issue
(HTTP >= 0.8x in-process ORT at p99 <= 100 ms; batching >= 1.5x) are measured and reported,
not asserted: on two shared cores they depend on the neighbours. Figures go to
$TUNELINE_RELIABILITY_OUT/serving-*.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_serving import (
    build_variant,
    build_variant_bento,
    make_project,
    served,
    write_serve_config,
)
from tuneline.config import Params, load_params
from tuneline.io import md5_file

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import load_serving  # noqa: E402

TOKEN = "load-token"
SERVER_CPUS, LOADER_CPUS = "0", {1}
P99_BOUND_MS = 100.0
# Accepted requests under 3x overload: bounded by the queue BentoML admits (max_concurrency)
# times the batch service time; far below the 30 s request timeout.
OVERLOAD_P99_CEILING_MS = 5000.0


class Served:
    def __init__(self, params: Params, variant: Path, tag: str, base: Path) -> None:
        self.params, self.variant, self.tag, self.base = params, variant, tag, base


@pytest.fixture(scope="module")
def bento(tmp_path_factory: pytest.TempPathFactory) -> Served:
    base = tmp_path_factory.mktemp("load")
    params = load_params(REPO, profile="smoke")
    make_project(base / "project")
    variant = build_variant(base / "project", base / "variant", params, shuffle=False, steps=30)
    version = f"load-{md5_file(variant / 'model.onnx')[:10]}"
    tag = build_variant_bento(variant, params, name="load-classifier", version=version)
    return Served(params, variant, tag, base)


@pytest.fixture
def pinned_loader() -> Iterator[None]:
    old = load_serving.pin_to(LOADER_CPUS)
    try:
        yield
    finally:
        if old:
            os.sched_setaffinity(0, old)


def write(name: str, data: dict[str, Any]) -> None:
    out = os.environ.get("TUNELINE_RELIABILITY_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, name).write_text(json.dumps(data, indent=2, default=str))


def test_load_profile_sheds_without_server_errors_and_recovers(
    bento: Served, pinned_loader: None
) -> None:
    log = bento.base / "serve-profile.log"
    env = {"TUNELINE_API_TOKEN": TOKEN}
    with served(bento.tag, log, env=env, cpus=SERVER_CPUS) as url:
        result = asyncio.run(load_serving.run_profile(url, token=TOKEN, phase_s=10.0, burst=200))
    result["serve"] = bento.params.serve.model_dump()
    write("serving-load.json", result)
    phases = result["phases"]
    for name, phase in phases.items():
        assert phase["server_errors"] == 0, (name, phase["statuses"])
    steady, over, burst, recovery = (
        phases[k] for k in ("steady_70pct", "overload_3x", "burst", "recovery_70pct")
    )
    # A late generator bunches sends into bursts: then the phase measures the generator.
    assert steady["send_lag_p99_ms"] < 100, f"load generator fell behind: {steady}"
    assert steady["accepted"] >= 0.98 * steady["sent"], steady["statuses"]
    # Overload is shed with 429/503, not queued without bound.
    assert over["shed"] + burst["shed"] > 0, (over["statuses"], burst["statuses"])
    assert over["accepted"] > 0 and over["p99_ms"] <= OVERLOAD_P99_CEILING_MS, over
    # Recovery: everything accepted again, latency back near the steady phase.
    assert recovery["accepted"] >= 0.98 * recovery["sent"], recovery["statuses"]
    assert recovery["p99_ms"] <= 4 * steady["p99_ms"] + 100, (steady, recovery)


def inprocess_rps(variant: Path, seconds: float = 4.0) -> float:
    """Requests/s of the same payloads through ORT in this process (1 thread, no HTTP)."""
    from serving.predictor import OnnxTextClassifier

    model = OnnxTextClassifier(variant, num_threads=1)
    payloads = load_serving.Loader("http://unused").payloads
    model.predict(payloads[0]["texts"])
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.predict(payloads[n % len(payloads)]["texts"])
        n += 1
    return n / (time.perf_counter() - start)


def sweep(url: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        loader = load_serving.Loader(url, token=TOKEN)
        await loader.open_loop("warmup", 5, 2)
        cap = await loader.closed_loop("capacity", 16, 5.0)
        swept = await loader.max_rate_under_p99("sweep", cap.throughput_rps, P99_BOUND_MS, 4.0)
        return {"capacity_rps": cap.throughput_rps, "capacity_p99_ms": cap.p99_ms, **swept}

    return asyncio.run(go())


def test_http_vs_inprocess_and_batching_on_vs_off(bento: Served, pinned_loader: None) -> None:
    params = bento.params
    old = load_serving.pin_to({int(SERVER_CPUS)})  # measure ORT on the server's CPU
    try:
        ort_rps = inprocess_rps(bento.variant)
    finally:
        if old:
            os.sched_setaffinity(0, old)
    env = {"TUNELINE_API_TOKEN": TOKEN}
    results: dict[str, Any] = {"inprocess_ort_rps": ort_rps, "p99_bound_ms": P99_BOUND_MS}
    for mode, batch in (("batching_on", params.serve.max_batch_size), ("batching_off", 1)):
        config = write_serve_config(bento.base / f"serve-{mode}.json", params, max_batch_size=batch)
        log = bento.base / f"serve-{mode}.log"
        with served(bento.tag, log, env=env, serve_config=config, cpus=SERVER_CPUS) as url:
            results[mode] = sweep(url)
    on, off = results["batching_on"]["throughput_rps"], results["batching_off"]["throughput_rps"]
    results["http_over_inprocess"] = on / ort_rps if ort_rps else None
    results["batching_on_over_off"] = on / off if off else None
    results["targets"] = {"http_over_inprocess": 0.8, "batching_on_over_off": 1.5}
    write("serving-efficiency.json", results)
    for mode in ("batching_on", "batching_off"):
        for step in results[mode]["steps"]:
            assert step["server_errors"] == 0, (mode, step["name"], step["statuses"])
    assert ort_rps > 0, results
    for mode in ("batching_on", "batching_off"):
        assert any(step["accepted"] > 0 for step in results[mode]["steps"]), results[mode]
