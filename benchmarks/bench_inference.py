"""Inference benchmark: PyTorch FP32 eager vs ORT FP32 vs every compressed variant.

All engines run in one process with the same thread count, at batch 1 and batch 32, every
sequence padded to 128 tokens. Reports rows/s, p50/p95/p99 latency per call, test accuracy,
file size, and achieved GFLOP/s as a fraction of an FP32 matmul probe run in the same process.
Writes benchmarks/results/inference.json and inference.md.

    .venv/bin/python benchmarks/bench_inference.py                # tiny smoke model, synthetic
    .venv/bin/python benchmarks/bench_inference.py --base minilm  # MiniLM, trained briefly
    .venv/bin/python benchmarks/bench_inference.py --model-dir DIR --prepared data/prepared
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.synthetic import LABELS, synthetic_rows, train_briefly  # noqa: E402

SEQ = 128


def synthetic_prepared(root: Path, seed: int = 0) -> Path:
    """A learnable two-class dataset in the data/prepared layout."""
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True, exist_ok=True)
    for name, n, s in (("train", 320, seed + 1), ("val", 40, seed + 2), ("test", 200, seed + 3)):
        synthetic_rows(n, s, max_words=40).to_parquet(prepared / f"{name}.parquet")
    (prepared / "labels.json").write_text(json.dumps({"labels": LABELS}))
    return prepared


def build_model(base: str, prepared: Path, out: Path, params: Any, steps: int) -> Path:
    """Train `base` (tiny-bert or minilm) for a few steps on the synthetic train split."""
    from tuneline.models import build_tiny_bert, load_pretrained, resolve_model_source

    train = pd.read_parquet(prepared / "train.parquet")
    if base == "tiny-bert":
        model, tok = build_tiny_bert(train["text"].tolist(), LABELS, params.train)
    else:
        model, tok = load_pretrained(resolve_model_source(base), LABELS)
    lr = 1e-3 if base == "tiny-bert" else 5e-5
    texts, labels = train["text"].tolist(), train["label"].tolist()
    train_briefly(model, tok, texts, labels, steps=steps, lr=lr, max_length=SEQ)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    (out / "labels.json").write_text(json.dumps({"labels": LABELS}))
    return out


def matmul_peak_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    """FP32 GEMM throughput with the benchmark's thread count: the roofline we compare to."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def flops_per_sequence(arch: dict[str, int], seq: int = SEQ) -> float:
    """Multiply-adds x2 of the encoder + head (embedding lookups and softmax ignored)."""
    h, i, layers, k = arch["hidden"], arch["intermediate"], arch["layers"], arch["num_labels"]
    per_layer = seq * (8 * h * h + 4 * h * i) + 4 * seq * seq * h
    return float(layers * per_layer + 2 * h * h + 2 * h * k)


def time_calls(run: Any, feeds: list[Any], min_calls: int) -> tuple[list[float], int]:
    run(feeds[0])
    times, rows = [], 0
    while len(times) < min_calls:
        for feed in feeds:
            start = time.perf_counter()
            run(feed)
            times.append(time.perf_counter() - start)
            rows += len(feed["input_ids"])
            if len(times) >= min_calls:
                break
    return times, rows


def measure(
    name: str,
    run: Any,
    encode: Callable[[list[str]], dict[str, np.ndarray]],
    texts: list[str],
    y: list[int],
    arch: dict[str, int],
    size_mb: float,
    peak: float,
    rows: int,
) -> dict[str, Any]:
    """`encode` turns texts into the engine's feeds, padded to SEQ tokens; `run` runs them."""
    out: dict[str, Any] = {"engine": name, "size_mb": size_mb, "architecture": arch}
    preds = np.concatenate(
        [run(encode(texts[i : i + 32])) for i in range(0, len(texts), 32)]
    ).argmax(-1)
    out["accuracy"] = float(np.mean(preds == np.asarray(y)))
    for batch in (1, 32):
        feeds = [encode(texts[i : i + batch]) for i in range(0, min(len(texts), rows), batch)]
        times, n = time_calls(run, feeds, max(len(feeds), 8 if batch == 32 else 30))
        ms = np.asarray(times) * 1000
        tput = n / sum(times)
        gflops = tput * flops_per_sequence(arch) / 1e9
        out[f"b{batch}"] = {
            "rows_per_s": tput,
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)),
            "gflops": gflops,
            "peak_fraction": gflops / peak,
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Inference benchmark ({report['base']}, seq {SEQ}, {report['threads']} thread(s))",
        "",
        f"CPU: {report['cpu']} - flags: {', '.join(report['cpu_flags'])}",
        f"FP32 matmul probe: {report['peak_gflops']:.1f} GFLOP/s. Chosen variant: "
        f"`{report['chosen']}`.",
        "",
        "| engine | batch | rows/s | x PyTorch | p50 ms | p95 ms | p99 ms | accuracy "
        "| size MB | GFLOP/s | of peak |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = report["results"][0]
    for r in report["results"]:
        for b in ("b1", "b32"):
            m = r[b]
            lines.append(
                f"| {r['engine']} | {b[1:]} | {m['rows_per_s']:.1f} "
                f"| {m['rows_per_s'] / base[b]['rows_per_s']:.2f} | {m['p50_ms']:.2f} "
                f"| {m['p95_ms']:.2f} | {m['p99_ms']:.2f} | {r['accuracy']:.4f} "
                f"| {r['size_mb']:.1f} | {m['gflops']:.1f} | {m['peak_fraction']:.1%} |"
            )
    lines += [
        "",
        "INT8 variants can exceed 100 % of the FP32 probe: the probe is an FP32 GEMM.",
        "",
    ]
    return "\n".join(lines)


def cpu_info() -> tuple[str, list[str]]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
        platform.processor(),
    )
    flags = set(
        next(
            (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
        )
    )
    wanted = ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"]
    return model, [f for f in wanted if f in flags]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", type=Path, help="fine-tuned HF dir (default: build one)")
    ap.add_argument("--prepared", type=Path, help="data/prepared (default: synthetic)")
    ap.add_argument("--base", default="tiny-bert", help="model to build when no --model-dir")
    ap.add_argument("--profile", default=None, help="params profile (default smoke for tiny-bert)")
    ap.add_argument("--threads", type=int, default=None, help="default compress.num_threads")
    ap.add_argument("--rows", type=int, default=None, help="test rows timed (default bench_rows)")
    ap.add_argument("--train-steps", type=int, default=40)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)

    import torch

    from serving.predictor import OnnxTextClassifier
    from tasks.compress.task import compress_model
    from tuneline.config import load_params

    profile = args.profile or ("smoke" if args.base == "tiny-bert" and not args.model_dir else None)
    params = load_params(ROOT, profile)
    threads = args.threads or params.compress.num_threads
    params = load_params(
        ROOT, profile, overrides={"compress.num_threads": threads, "train.max_seq_len": SEQ}
    )
    rows = args.rows or params.compress.bench_rows
    work = Path(tempfile.mkdtemp(prefix="tuneline-bench-"))
    os.environ.setdefault("TUNELINE_HOME", str(work / "home"))  # keep bench runs out of .tuneline
    torch.set_num_threads(threads)
    prepared = args.prepared or synthetic_prepared(work)
    model_dir = args.model_dir or build_model(
        args.base, prepared, work / "model", params, args.train_steps
    )
    result = compress_model.fn(
        model_dir, prepared, params, output_dir=work / "variants", parent_run_id=None
    )
    test = pd.read_parquet(prepared / "test.parquet")
    texts, y = test["text"].astype(str).tolist(), test["label"].astype(int).tolist()
    peak = matmul_peak_gflops(threads)
    torch.set_num_threads(threads)

    from tasks.compress.export import architecture
    from tuneline.models import encode, load_classifier

    model, tok = load_classifier(model_dir)

    def torch_run(feed: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()

    size = (Path(model_dir) / "model.safetensors").stat().st_size / 2**20
    results = [
        measure(
            "pytorch_fp32_eager",
            torch_run,
            lambda batch: encode(tok, batch, SEQ, pad_to_max=True),
            texts,
            y,
            architecture(model.config),
            size,
            peak,
            rows,
        )
    ]
    for v in result.variants:
        clf = OnnxTextClassifier(v.onnx_dir, num_threads=threads, max_length=SEQ)
        arch = json.loads((Path(v.onnx_dir) / "variant.json").read_text())["architecture"]
        results.append(
            measure(
                f"ort_{v.name}",
                clf.run,
                functools.partial(clf.encode, pad_to_max=True),
                texts,
                y,
                arch,
                v.metrics["size_mb"],
                peak,
                rows,
            )
        )
    cpu, flags = cpu_info()
    report = {
        "base": str(args.model_dir or args.base),
        "threads": threads,
        "seq": SEQ,
        "rows": rows,
        "cpu": cpu,
        "cpu_flags": flags,
        "peak_gflops": peak,
        "chosen": result.chosen.name,
        "rejected": result.rejected,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inference.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "inference.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
