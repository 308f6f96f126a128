"""Serving efficiency of one variant, every comparison interleaved in one process.

Several servers of the same Bento run at once, each with other serve settings; the load
generator (benchmarks/load_serving.py, pinned to CPU 1) measures them in turns: capacity
(closed loop) in rounds, then the same rate sweep step by step across all of them, with
in-process runs of the same model, runtime and threads between the steps. So neighbours on a
shared machine slow every figure of a comparison alike instead of one of its sides.

Rows (one text per request, the test split's texts: their real length mix):
  batching_on      serve.max_batch_size (adaptive batching), 1 worker x 1 thread, no cache
  batching_off     max_batch_size 1, otherwise the same
  cache_off_zipf   batching on, no cache, a stream where half the requests repeat (Zipf)
  cache_on_zipf    the same stream, serve.cache_size answers cached
  workers_2        2 workers x 1 thread on both CPUs (the generator shares CPU 1)
and in-process texts/s of the variant (serving/predictor.py) on the servers' CPU at batch 1
and at max_batch_size. Targets (issue 15): HTTP at p99 <= 100 ms >= 0.8x in-process; batching
on/off >= 1.5x; cache on/off >= 1.8x.

Usage:
    python benchmarks/serving_efficiency.py --variant DIR --test data/prepared/test.parquet \\
        [--out benchmarks/results/reliability/serving-efficiency-chosen.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import load_serving  # noqa: E402
from bench_inference import cpu_info, versions  # noqa: E402

TOKEN = "efficiency-token"
SERVER_CPU, LOADER_CPU = 0, 1
P99_BOUND_MS = 100.0
FRACTIONS = (0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2)
TARGETS = {"http_over_inprocess": 0.8, "batching_on_over_off": 1.5, "cache_on_over_off": 1.8}


def server_settings(max_batch: int, cache: int) -> dict[str, dict[str, Any]]:
    one = {"workers": 1, "num_threads": 1}
    return {
        "batching_on": {**one, "max_batch_size": max_batch, "cache_size": 0},
        "batching_off": {**one, "max_batch_size": 1, "cache_size": 0},
        "cache_off_zipf": {**one, "max_batch_size": max_batch, "cache_size": 0},
        "cache_on_zipf": {**one, "max_batch_size": max_batch, "cache_size": cache},
        "workers_2": {"workers": 2, "num_threads": 1, "max_batch_size": max_batch, "cache_size": 0},
    }


def inprocess_texts_per_s(model: Any, texts: Sequence[str], batch: int, seconds: float) -> float:
    """Texts/s of `model.predict` on consecutive `batch`-text slices of `texts`."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        i = (n * batch) % max(len(texts) - batch, 1)
        model.predict(texts[i : i + batch])
        n += 1
    return n * batch / (time.perf_counter() - start)


def good(phase: load_serving.PhaseResult, bound_ms: float) -> bool:
    return (
        phase.p99_ms is not None
        and phase.p99_ms <= bound_ms
        and phase.shed == 0
        and phase.server_errors == 0
        and phase.client_errors == 0
    )


async def interleaved(
    loaders: dict[str, load_serving.Loader],
    inproc: Any,
    *,
    capacity_s: float,
    step_s: float,
    rounds: int,
) -> dict[str, Any]:
    """Capacity of each server in `rounds` turns, then `rounds` sweeps, each step in turns.

    A sweep offers each server FRACTIONS of its median capacity, one step per server in
    turn, and stops offering more to a server once a step from 0.7 on misses the bound; a
    row's figure is the median over sweeps of its best step within the bound.
    """
    rows: dict[str, dict[str, Any]] = {
        n: {"capacity_rps": [], "capacity_p99_ms": [], "best_rps": [], "steps": []} for n in loaders
    }
    samples: dict[str, list[float]] = {"batch_1": [], "batch_max": []}
    for name, loader in loaders.items():  # warm: OpenVINO compiles each new shape once
        await loader.closed_loop(f"{name}-warmup", 32, capacity_s)
    for _ in range(rounds):
        for name, loader in loaders.items():
            cap = await loader.closed_loop(f"{name}-capacity", 32, capacity_s)
            rows[name]["capacity_rps"].append(cap.throughput_rps)
            rows[name]["capacity_p99_ms"].append(cap.p99_ms)
        inproc(samples)
    capacity = {n: statistics.median(r["capacity_rps"]) for n, r in rows.items()}
    for sweep in range(rounds):
        live, best = set(loaders), dict.fromkeys(loaders, 0.0)
        for fraction in FRACTIONS:
            for name in [n for n in loaders if n in live]:
                phase = await loaders[name].open_loop(
                    f"{name}#{sweep}@{fraction:g}", max(capacity[name] * fraction, 1.0), step_s
                )
                rows[name]["steps"].append(asdict(phase) | {"timeline": []})
                if good(phase, P99_BOUND_MS):
                    best[name] = max(best[name], phase.throughput_rps)
                elif fraction >= 0.7:
                    live.discard(name)
            inproc(samples)
            if not live:
                break
        for name, value in best.items():
            rows[name]["best_rps"].append(value)
    for row in rows.values():
        row["throughput_rps"] = statistics.median(row["best_rps"])
        row["server_errors"] = sum(s["server_errors"] for s in row["steps"])
        row["shed"] = sum(s["shed"] for s in row["steps"])
    rows_out: dict[str, Any] = dict(rows)
    rows_out["inprocess_texts_per_s"] = {k: statistics.median(v) for k, v in samples.items()}
    rows_out["inprocess_samples"] = samples
    return rows_out


def ratios(rows: dict[str, Any]) -> dict[str, float | None]:
    def over(a: float, b: float) -> float | None:
        return a / b if b else None

    best_inproc = max(rows["inprocess_texts_per_s"].values())
    return {
        "http_over_inprocess": over(rows["batching_on"]["throughput_rps"], best_inproc),
        "batching_on_over_off": over(
            rows["batching_on"]["throughput_rps"], rows["batching_off"]["throughput_rps"]
        ),
        "cache_on_over_off": over(
            rows["cache_on_zipf"]["throughput_rps"], rows["cache_off_zipf"]["throughput_rps"]
        ),
        "cache_on_over_off_capacity": over(
            statistics.median(rows["cache_on_zipf"]["capacity_rps"]),
            statistics.median(rows["cache_off_zipf"]["capacity_rps"]),
        ),
        "workers_2_over_1": over(
            rows["workers_2"]["throughput_rps"], rows["batching_on"]["throughput_rps"]
        ),
    }


def measure(
    tag: str,
    variant: Path,
    texts: list[str],
    params: Any,
    work: Path,
    *,
    capacity_s: float = 4.0,
    step_s: float = 4.0,
    rounds: int = 2,
    stream_len: int = 40_000,
) -> dict[str, Any]:
    """Serve `tag` once per row of server_settings and measure them all, interleaved.

    Args:
        tag: a built Bento of `variant`.
        variant: the variant directory (for the in-process runs).
        texts: the request texts (one per request), e.g. the test split's.
        params: the loaded params (serve: the other limits, max_batch_size, cache_size).
        work: a directory for serve configs and server logs.
        capacity_s, step_s, rounds: seconds per capacity phase / sweep step; capacity turns.
        stream_len: length of the Zipf stream (more than a sweep sends).

    Returns:
        The rows (capacity, sweep steps, best throughput at p99 <= 100 ms), in-process
        texts/s, the ratios against the targets, the machine.
    """
    from serving.predictor import OnnxTextClassifier
    from tests.helpers_serving import served, write_serve_config

    serve = params.serve
    settings = server_settings(serve.max_batch_size, serve.cache_size)
    stream = load_serving.zipf_stream(texts, stream_len, repeat_share=0.5, exponent=1.1, seed=0)
    with contextlib.ExitStack() as stack:
        loaders = {}
        for name, overrides in settings.items():
            config = write_serve_config(work / f"serve-{name}.json", params, **overrides)
            cpus = f"{SERVER_CPU},{LOADER_CPU}" if overrides["workers"] > 1 else str(SERVER_CPU)
            url = stack.enter_context(
                served(
                    tag,
                    work / f"serve-{name}.log",
                    serve_config=config,
                    env={"TUNELINE_API_TOKEN": TOKEN},
                    cpus=cpus,
                )
            )
            source = stream if "zipf" in name else texts
            loaders[name] = load_serving.Loader(
                url, token=TOKEN, texts_per_request=1, texts=source, payloads=len(source)
            )
        model = OnnxTextClassifier(variant, num_threads=1)
        model.predict(texts[: serve.max_batch_size])

        def inproc(samples: dict[str, list[float]]) -> None:
            with load_serving.pinned({SERVER_CPU}):  # the servers' CPU, as they run
                samples["batch_1"].append(inprocess_texts_per_s(model, texts, 1, 2.0))
                samples["batch_max"].append(
                    inprocess_texts_per_s(model, texts, serve.max_batch_size, 2.0)
                )

        with load_serving.pinned({LOADER_CPU}):
            rows = load_serving.run(
                interleaved(loaders, inproc, capacity_s=capacity_s, step_s=step_s, rounds=rounds)
            )
    return {
        "variant": str(variant),
        "variant_info": json.loads((variant / "variant.json").read_text()),
        "texts": len(texts),
        "texts_per_request": 1,
        "p99_bound_ms": P99_BOUND_MS,
        "settings": settings,
        "zipf": {"repeat_share": 0.5, "exponent": 1.1, "cache_size": serve.cache_size},
        "rows": rows,
        "ratios": ratios(rows),
        "targets": TARGETS,
        "machine": machine(),
    }


def build_distilled_bf16_ov(out: Path, params: Any) -> Path:
    """The structure and runtime compression chooses here, without a pipeline run:
    MiniLM cut to compress.distill_layers layers (build_student's init, fresh 2-class head,
    no KD: throughput does not depend on what the weights learned), the fused FP32 ONNX file,
    served by OpenVINO in BF16 (what candidate distilled_bf16_ov is)."""
    import torch

    from tasks.compress.export import export_fp32
    from tasks.compress.variants import build_student
    from tuneline.models import load_pretrained, resolve_model_source

    torch.manual_seed(0)
    labels = ["ham", "spam"]
    teacher, tok = load_pretrained(resolve_model_source("minilm"), labels)
    student = build_student(teacher, params.compress.distill_layers).eval()
    meta = {"name": "distilled_bf16_ov", "runtime": "openvino", "precision": "bf16"}
    meta["method"] = "untrained student (benchmarks/serving_efficiency.py)"
    export_fp32(
        student,
        tok,
        labels,
        out / "distilled_bf16_ov",
        opset=params.compress.opset,
        max_seq_len=params.train.max_seq_len,
        work_dir=out / "work",
        meta=meta,
    )
    return out / "distilled_bf16_ov"


def machine() -> dict[str, Any]:
    name, flags = cpu_info()
    return {
        "cpu": name,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "versions": versions(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--variant",
        type=Path,
        default=None,
        help="a variant directory (a run's chosen candidate); default: build_distilled_bf16_ov",
    )
    ap.add_argument("--test", type=Path, required=True, help="the test split (parquet, 'text')")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--step-s", type=float, default=4.0)
    ap.add_argument("--capacity-s", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    import pandas as pd

    from tests.helpers_serving import build_variant_bento
    from tuneline.config import load_params
    from tuneline.io import md5_file

    params = load_params(ROOT, overrides={"train.max_seq_len": 128})  # not auto: a fixed length
    texts = [t[: params.serve.max_chars] for t in pd.read_parquet(args.test)["text"].tolist()]
    before = machine()
    print(f"{before['cpu']}; flags {before['cpu_flags']}; load {before['load_average']}")
    with tempfile.TemporaryDirectory() as work:
        variant = args.variant or build_distilled_bf16_ov(Path(work) / "built", params)
        version = f"eff-{md5_file(variant / 'model.onnx')[:10]}"
        tag = build_variant_bento(variant, params, name="efficiency", version=version)
        result = measure(
            tag,
            variant,
            texts,
            params,
            Path(work),
            capacity_s=args.capacity_s,
            step_s=args.step_s,
            rounds=args.rounds,
        )
    result["machine_before"] = before
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(json.dumps({"ratios": result["ratios"], "targets": TARGETS, "load": result["machine"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
