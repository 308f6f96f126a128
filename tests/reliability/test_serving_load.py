"""A served Bento under load: steady, 3x overload, a burst, recovery; HTTP vs in-process
throughput; adaptive batching on vs off (slow; `make reliability`). A 3-second-phase version
of the load profile against the service served from source runs in `make test`.

The server is pinned to CPU 0 and the generator (benchmarks/load_serving.py) to CPU 1 where
the OS allows. Required: no 5xx server error (500/502/504) in any phase, overload shed as
429/503, p99 of accepted requests bounded, full recovery. The efficiency targets of the issue
(HTTP >= 0.8x in-process ORT at p99 <= 100 ms; batching >= 1.5x) are measured and reported,
not asserted: on two shared cores they depend on the neighbours. Figures go to
$TUNELINE_RELIABILITY_OUT/serving-*.json.
"""

from __future__ import annotations

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
from tests.reliability_figures import write_figures
from tuneline.config import Params, load_params
from tuneline.io import md5_file

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import load_serving  # noqa: E402

TOKEN = "load-token"
SERVER_CPUS, LOADER_CPUS = "0", {1}
P99_BOUND_MS = 100.0
# Accepted requests under 3x overload: bounded by the queue BentoML admits (max_concurrency)
# times the batch service time; far below the 30 s request timeout.
OVERLOAD_P99_CEILING_MS = 5000.0
# The server gets one CPU: one worker on one runtime thread (0s would split the packager's
# cores), and no result cache: the generator repeats 64 payloads, which would all be hits.
ONE_CORE = {"workers": 1, "num_threads": 1, "cache_size": 0}


class Served:
    def __init__(self, params: Params, variant: Path, tag: str, base: Path) -> None:
        self.params, self.variant, self.tag, self.base = params, variant, tag, base


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """A tiny ONNX variant (tag empty: served from source)."""
    base = tmp_path_factory.mktemp("load")
    params = load_params(REPO, profile="smoke")
    make_project(base / "project")
    variant = build_variant(base / "project", base / "variant", params, shuffle=False, steps=30)
    return Served(params, variant, "", base)


@pytest.fixture(scope="module")
def bento(tiny: Served) -> Served:
    version = f"load-{md5_file(tiny.variant / 'model.onnx')[:10]}"
    tag = build_variant_bento(tiny.variant, tiny.params, name="load-classifier", version=version)
    return Served(tiny.params, tiny.variant, tag, tiny.base)


@pytest.fixture
def pinned_loader() -> Iterator[None]:
    with load_serving.pinned(LOADER_CPUS):
        yield


def test_load_short_sheds_without_server_errors(tiny: Served, pinned_loader: None) -> None:
    """`make test`'s version: 3 s phases against the service served from source."""
    env = {"TUNELINE_API_TOKEN": TOKEN}
    log = tiny.base / "serve-short.log"
    target = "serving.service:Classifier"
    config = write_serve_config(tiny.base / "serve-short.json", tiny.params, **ONE_CORE)
    with served(
        target, log, model_dir=tiny.variant, serve_config=config, env=env, cpus=SERVER_CPUS
    ) as url:
        result = load_serving.run(
            load_serving.run_profile(url, token=TOKEN, capacity_s=3.0, phase_s=3.0, burst=150)
        )
    write_figures("serving-load-short.json", result)
    phases = result["phases"]
    for name, phase in phases.items():
        assert phase["server_errors"] == 0, (name, phase["statuses"])
        assert phase["client_errors"] == 0, (name, phase["statuses"])
    over, burst = phases["overload_3x"], phases["burst"]
    assert over["shed"] + burst["shed"] > 0, (over["statuses"], burst["statuses"])
    assert over["accepted"] > 0 and over["p99_ms"] <= OVERLOAD_P99_CEILING_MS, over
    assert phases["recovery_70pct"]["accepted"] >= 0.9 * phases["recovery_70pct"]["sent"]


def cache_counts(metrics: str) -> dict[str, float]:
    """tuneline_cache_{hits_total,misses_total,size} from a /metrics page."""
    found = {}
    for line in metrics.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("tuneline_cache_") and not line.startswith("#"):
            found[name.removeprefix("tuneline_cache_")] = float(value)
    return found


def test_cached_answer_is_the_fresh_answer_byte_for_byte(tiny: Served) -> None:
    """Over HTTP: the miss, the hit and a cache-off server's answer are the same bytes; the
    hits, misses and size show on /metrics; no access log line unless serve.access_log."""
    import httpx

    body = {"texts": ["win a free cash prize now call 0906", "lunch at the office?"]}
    answers: dict[str, list[bytes]] = {}
    for mode, cache_size, access_log in (("cache_on", 64, False), ("cache_off", 0, True)):
        config = write_serve_config(
            tiny.base / f"serve-{mode}.json",
            tiny.params,
            **{**ONE_CORE, "cache_size": cache_size, "access_log": access_log},
        )
        log = tiny.base / f"serve-{mode}.log"
        target = "serving.service:Classifier"
        with (
            served(target, log, model_dir=tiny.variant, serve_config=config) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            answers[mode] = [client.post("/predict", json=body).content for _ in range(3)]
            # one of them again, beside a new text: answered from the cache, in order
            mixed = client.post("/predict", json={"texts": ["new text", body["texts"][1]]})
            counts = cache_counts(client.get("/metrics").text)
        if cache_size:
            assert counts == {"hits_total": 5.0, "misses_total": 3.0, "size": 3.0}, counts
        else:
            assert counts.get("hits_total", 0.0) == 0.0 and counts.get("size", 0.0) == 0.0
        assert mixed.json()[1] == httpx.Response(200, content=answers[mode][0]).json()[1]
        access_lines = [line for line in log.read_text().splitlines() if "/predict" in line]
        assert bool(access_lines) == access_log, access_lines[:3]
    fresh, hit, again = answers["cache_on"]
    assert fresh == hit == again == answers["cache_off"][0]


def test_a_batch_runs_in_length_buckets_and_answers_in_order(tiny: Served) -> None:
    """Texts of very different lengths in one call: each answer is the one it gets alone."""
    import numpy as np

    from serving.predictor import OnnxTextClassifier
    from serving.tokens import length_buckets

    model = OnnxTextClassifier(tiny.variant, num_threads=1)
    texts = [" ".join(["cash prize"] * n) for n in (40, 1, 25, 3, 60, 2, 2, 8, 1, 30, 5, 4)] * 3
    lengths = model.encode(texts)["attention_mask"].sum(axis=1)
    assert len(length_buckets(lengths)) > 1  # the case tested really is bucketed
    batched = model.logits(texts)
    alone = np.concatenate([model.logits([t]) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-4)


@pytest.mark.slow
def test_load_profile_sheds_without_server_errors_and_recovers(
    bento: Served, pinned_loader: None
) -> None:
    log = bento.base / "serve-profile.log"
    env = {"TUNELINE_API_TOKEN": TOKEN}
    config = write_serve_config(bento.base / "serve-profile.json", bento.params, **ONE_CORE)
    with served(bento.tag, log, env=env, serve_config=config, cpus=SERVER_CPUS) as url:
        result = load_serving.run(
            load_serving.run_profile(url, token=TOKEN, phase_s=10.0, burst=200)
        )
    result["serve"] = bento.params.serve.model_dump()
    write_figures("serving-load.json", result)
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


def build_minilm_int8(out: Path, params: Params) -> Path:
    """The default model's served form: MiniLM (fresh 2-class head) exported and INT8-quantized.

    Throughput does not depend on what the head learned, so no fine-tuning is needed to
    measure the serving path of the model `make run` ships.
    """
    import torch

    from tasks.compress.export import export_fp32, write_variant_dir
    from tasks.compress.variants import quantize_dynamic_int8
    from tuneline.models import load_pretrained, resolve_model_source

    torch.manual_seed(0)
    labels = ["ham", "spam"]
    model, tok = load_pretrained(resolve_model_source("minilm"), labels)
    model.eval()
    max_len = params.train.max_seq_len
    export_fp32(
        model,
        tok,
        labels,
        out / "fp32",
        opset=params.compress.opset,
        max_seq_len=max_len,
        work_dir=out / "work",
        meta={"name": "fp32", "method": "onnx_fp32_optimized"},
    )
    quantize_dynamic_int8(out / "fp32" / "model.onnx", out / "work" / "int8.onnx")
    meta = {"name": "int8_dynamic", "method": "ort_quantize_dynamic", "max_seq_len": max_len}
    write_variant_dir(out / "int8_dynamic", out / "work" / "int8.onnx", tok, labels, meta)
    return out / "int8_dynamic"


def inprocess_texts_per_s(variant: Path, texts: list[str], batch: int, seconds: float) -> float:
    """Texts/s of ORT on `batch`-text calls in this process (1 thread, no HTTP)."""
    from serving.predictor import OnnxTextClassifier

    model = OnnxTextClassifier(variant, num_threads=1)
    model.predict(texts[:batch])
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        i = (n * batch) % (len(texts) - batch)
        model.predict(texts[i : i + batch])
        n += 1
    return n * batch / (time.perf_counter() - start)


def sweep(url: str, texts_per_request: int) -> dict[str, Any]:
    """Capacity (closed loop), then the highest open-loop rate with p99 <= the bound."""

    async def go() -> dict[str, Any]:
        loader = load_serving.Loader(url, token=TOKEN, texts_per_request=texts_per_request)
        await loader.open_loop("warmup", 20, 2)
        cap = await loader.closed_loop("capacity", 32, 5.0)
        swept = await loader.max_rate_under_p99("sweep", cap.throughput_rps, P99_BOUND_MS, 4.0)
        return {"capacity_rps": cap.throughput_rps, "capacity_p99_ms": cap.p99_ms, **swept}

    return load_serving.run(go())


@pytest.mark.slow
def test_http_vs_inprocess_and_batching_on_vs_off(tmp_path: Path, pinned_loader: None) -> None:
    """MiniLM INT8 (the default served variant), one text per request (adaptive batching's
    use case): the highest throughput at p99 <= 100 ms over HTTP with batching on, off, and
    in-process ORT on the server's CPU at batch 1 and at serve.max_batch_size."""
    params = load_params(REPO, overrides={"train.max_seq_len": 128})  # not auto: a fixed length
    variant = build_minilm_int8(tmp_path / "minilm", params)
    tag = build_variant_bento(
        variant, params, name="load-minilm", version=f"e-{md5_file(variant / 'model.onnx')[:10]}"
    )
    texts = load_serving.make_texts(512, 40, seed=1)
    max_batch = params.serve.max_batch_size
    with load_serving.pinned({int(SERVER_CPUS)}):  # measure ORT on the server's CPU
        inproc = {
            "batch_1": inprocess_texts_per_s(variant, texts, 1, 4.0),
            f"batch_{max_batch}": inprocess_texts_per_s(variant, texts, max_batch, 4.0),
        }
    env = {"TUNELINE_API_TOKEN": TOKEN}
    results: dict[str, Any] = {
        "model": "minilm int8_dynamic",
        "texts_per_request": 1,
        "words_per_text": 40,
        "p99_bound_ms": P99_BOUND_MS,
        "inprocess_ort_texts_per_s": inproc,
    }
    for mode, batch in (("batching_on", max_batch), ("batching_off", 1)):
        config = write_serve_config(
            tmp_path / f"serve-{mode}.json", params, max_batch_size=batch, **ONE_CORE
        )
        log = tmp_path / f"serve-{mode}.log"
        with served(tag, log, env=env, serve_config=config, cpus=SERVER_CPUS) as url:
            results[mode] = sweep(url, texts_per_request=1)
    on, off = results["batching_on"]["throughput_rps"], results["batching_off"]["throughput_rps"]
    # Against the best in-process figure (the strictest denominator).
    best = max(inproc.values())
    results["http_over_inprocess"] = on / best
    results["batching_on_over_off"] = on / off if off else None
    results["targets"] = {"http_over_inprocess": 0.8, "batching_on_over_off": 1.5}
    write_figures("serving-efficiency.json", results)
    for mode in ("batching_on", "batching_off"):
        for step in results[mode]["steps"]:
            assert step["server_errors"] == 0, (mode, step["name"], step["statuses"])
        assert results[mode]["throughput_rps"] > 0, (mode, results[mode])
    assert best > 0, results


@pytest.mark.slow
def test_efficiency_rows_are_measured_interleaved_without_server_errors(bento: Served) -> None:
    """benchmarks/serving_efficiency.py on the tiny Bento, short steps: every row (batching
    on/off, cache on/off on a Zipf stream, 2 workers) is swept with no 5xx, and the in-process
    figures are measured between the steps. The chosen variant's figures come from running
    the script itself (README "Serving")."""
    import pandas as pd
    import serving_efficiency

    texts = pd.read_parquet(bento.base / "project" / "data" / "prepared" / "test.parquet")
    work = bento.base / "efficiency"
    work.mkdir()
    result = serving_efficiency.measure(
        bento.tag,
        bento.variant,
        texts["text"].tolist(),
        bento.params,
        work,
        capacity_s=1.5,
        step_s=1.5,
        rounds=1,
        stream_len=5000,
    )
    rows = result["rows"]
    for name in serving_efficiency.server_settings(2, 2):
        assert rows[name]["steps"], name
        assert rows[name]["server_errors"] == 0, (
            name,
            [s["statuses"] for s in rows[name]["steps"]],
        )
        assert min(rows[name]["capacity_rps"]) > 0, (name, rows[name])
    assert min(rows["inprocess_texts_per_s"].values()) > 0
    assert set(result["ratios"]) >= set(serving_efficiency.TARGETS)
