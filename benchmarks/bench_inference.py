"""Inference benchmark: the PyTorch paths, the by-hand ORT INT8 recipe and every candidate.

Every engine runs in this one process on one pinned CPU with one thread, on three shapes:
1 x 128 tokens, 32 x 128, and the test split's texts in batches of 32 padded to the longest in
each batch (the real length distribution). Rounds are interleaved (round r times every engine
once at each shape, starting one engine further along each round) and the figures are medians
over the rounds, so drift on a shared machine falls on every engine alike. Tokenizing is not
timed: it costs every engine the same. Accuracy is each engine's own argmax over the test split.

Engines: PyTorch FP32 eager, PyTorch bf16 autocast, PyTorch dynamic INT8 (nn.Linear), the
by-hand ORT INT8 recipe (export, ORT's BERT fusions, quantize_dynamic: what Optimum does) and
every candidate compress_model kept (or found under --compress-dir).

    .venv/bin/python benchmarks/bench_inference.py                # tiny-bert, smoke profile
    .venv/bin/python benchmarks/bench_inference.py --base minilm  # MiniLM, default profile
    .venv/bin/python benchmarks/bench_inference.py --compress-dir RUN/compress \\
        --model-dir RUN/model --prepared data/prepared          # an existing run's candidates

Writes benchmarks/results/inference.{json,md} (inference-<profile>.* for another profile).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.synthetic import train_briefly  # noqa: E402

SEQ, BATCH, THREADS = 128, 32, 1
SHAPES = ("b1x128", "b32x128", "real")
FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx2")
B1_CALLS = 16  # single-row calls per b1 measurement
MIN_SECONDS = 0.25  # a measurement repeats its feeds this long: sub-ms calls are timer noise
FP32 = "pytorch_fp32_eager"
PYTORCH = "pytorch"
Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Engine:
    """One way to get logits: `encode(texts, pad_to_max)` makes its feeds, `run` runs them."""

    name: str
    kind: str  # pytorch | by_hand | candidate
    info: dict[str, str]  # structure, precision, runtime
    run: Callable[[Feeds], np.ndarray]
    encode: Callable[[Sequence[str], bool], Feeds]
    compress_accuracy: float | None = None  # what compress_model measured, to cross-check


def cpu_info() -> tuple[str, dict[str, bool]]:
    """The CPU model name and which of FLAGS it has."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = text.splitlines()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
        platform.processor(),
    )
    flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    return model, {f: f in flags for f in FLAGS}


def prepare_data(root: Path, params: Any) -> Path:
    """The profile's data.source, ingested and split by the project's own stage bodies."""
    from tasks.data.stages import PREPARED_DIR, stage_ingest, stage_prepare

    stage_ingest(root, params)
    stage_prepare(root, params)
    return root / PREPARED_DIR


def build_model(base: str, prepared: Path, out: Path, params: Any, steps: int) -> Path:
    """Train `base` (tiny-bert or minilm) for a few steps on the train split."""
    from tuneline.models import build_tiny_bert, load_pretrained, resolve_model_source

    labels = json.loads((prepared / "labels.json").read_text())["labels"]
    train = pd.read_parquet(prepared / "train.parquet")
    texts, y = train["text"].astype(str).tolist(), train["label"].astype(int).tolist()
    if base == "tiny-bert":
        model, tok = build_tiny_bert(texts, labels, params.train)
    else:
        model, tok = load_pretrained(resolve_model_source(base), labels)
    # shuffled so the few steps see both classes (the split is not in random order)
    order = np.random.default_rng(0).permutation(len(texts))
    lr = 1e-3 if base == "tiny-bert" else 5e-5
    texts, y = [texts[i] for i in order], [y[i] for i in order]
    train_briefly(model, tok, texts, y, steps=steps, lr=lr, max_length=SEQ)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    (out / "labels.json").write_text(json.dumps({"labels": labels}))
    return out


def pytorch_engines(model: Any, tok: Any) -> list[Engine]:
    """FP32 eager, bf16 autocast and dynamic INT8 (nn.Linear) of the parent model."""
    import torch

    from tuneline.models import encode

    with warnings.catch_warnings():  # torch.ao's deprecation notice; the API is what we measure
        warnings.simplefilter("ignore")
        int8 = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8
        )

    def runner(m: Any, bf16: bool) -> Callable[[Feeds], np.ndarray]:
        def run(feeds: Feeds) -> np.ndarray:
            with (
                torch.inference_mode(),
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
            ):
                out = m(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits
            return out.float().numpy()

        return run

    def enc(texts: Sequence[str], pad: bool) -> Feeds:
        return encode(tok, texts, SEQ, pad_to_max=pad)

    return [
        Engine(name, PYTORCH, {"structure": "parent", "precision": p, "runtime": PYTORCH}, run, enc)
        for name, p, run in (
            (FP32, "fp32", runner(model, False)),
            ("pytorch_bf16_autocast", "bf16", runner(model, True)),
            ("pytorch_int8_dynamic", "int8_dynamic", runner(int8, False)),
        )
    ]


def by_hand_ort_int8(model: Any, tok: Any, work: Path, opset: int, enc: Any) -> Engine:
    """Export, optimize_model(model_type='bert'), quantize_dynamic: the recipe Optimum follows.

    Exported with tuneline's exporter (dynamo): ORT 1.32 cannot quantize the fused graph of
    the TorchScript exporter (shape inference finds no type for BiasGelu's input).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    from serving.runtimes import OUTPUT_NAME, make_session
    from tasks.compress.export import export_raw

    raw, fused, int8 = (work / f"by_hand.{s}.onnx" for s in ("raw", "opt", "int8"))
    work.mkdir(parents=True, exist_ok=True)
    export_raw(model, tok, raw, opset)
    cfg = model.config
    opt = optimize_model(
        str(raw), model_type="bert", num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size
    )
    opt.save_model_to_file(str(fused), use_external_data_format=False)
    # Optimum's avx512_vnni dynamic config: QInt8 weights, per tensor, no reduced range
    quantize_dynamic(str(fused), str(int8), weight_type=QuantType.QInt8, per_channel=False)
    session = make_session(int8, THREADS)
    info = {"structure": "parent", "precision": "int8_dynamic", "runtime": "onnxruntime"}
    return Engine(
        "ort_int8_by_hand", "by_hand", info, lambda f: session.run([OUTPUT_NAME], f)[0], enc
    )


def candidate_engine(variant_dir: Path) -> Engine:
    """A candidate directory, loaded the way it is served (its runtime, one thread)."""
    from serving.predictor import VARIANT_FILE, OnnxTextClassifier

    info = json.loads((variant_dir / VARIANT_FILE).read_text())
    clf = OnnxTextClassifier(variant_dir, num_threads=THREADS, max_length=SEQ)
    accuracy = (info.get("metrics") or {}).get("accuracy")
    return Engine(
        str(info["name"]),
        "candidate",
        {k: str(info[k]) for k in ("structure", "precision", "runtime")},
        clf.run,
        lambda texts, pad: clf.encode(texts, pad_to_max=pad),
        None if accuracy is None else float(accuracy),
    )


def discover(compress_dir: Path) -> tuple[list[Path], str | None]:
    """Candidate directories under `compress_dir` and the chosen name (selection.json)."""
    from serving.predictor import MODEL_FILE, VARIANT_FILE

    dirs = sorted(
        p
        for p in compress_dir.iterdir()
        if (p / VARIANT_FILE).is_file() and (p / MODEL_FILE).is_file()
    )
    selection = compress_dir / "selection.json"
    chosen = json.loads(selection.read_text())["chosen"] if selection.exists() else None
    return dirs, chosen


def shape_feeds(engine: Engine, texts: list[str], real_rows: int) -> dict[str, list[Feeds]]:
    """The feeds of each shape; fixed shapes cycle the test texts so batches are full.

    "real" is timed on `real_rows` test texts drawn at random (seed 0: the same for every
    engine, so their length mix); "all" is every test text, run once for the accuracy.
    """
    pool = [texts[i % len(texts)] for i in range(2 * BATCH)]
    pick = np.sort(np.random.default_rng(0).permutation(len(texts))[:real_rows])
    sample = [texts[i] for i in pick]
    return {
        "b1x128": [engine.encode(pool[i : i + 1], True) for i in range(B1_CALLS)],
        "b32x128": [engine.encode(pool[i : i + BATCH], True) for i in (0, BATCH)],
        "real": [engine.encode(sample[i : i + BATCH], False) for i in range(0, len(sample), BATCH)],
        "all": [engine.encode(texts[i : i + BATCH], False) for i in range(0, len(texts), BATCH)],
    }


def seq_per_s(run: Callable[[Feeds], np.ndarray], feeds: list[Feeds]) -> float:
    """Rows per second over `feeds`, run in order, repeated until MIN_SECONDS have passed."""
    rows, start = 0, time.perf_counter()
    while True:
        for feed in feeds:
            run(feed)
            rows += len(feed["input_ids"])
        elapsed = time.perf_counter() - start
        if elapsed >= MIN_SECONDS:
            return rows / elapsed


def measure(
    engines: list[Engine], texts: list[str], rounds: int, real_rows: int
) -> tuple[dict[str, dict[str, list[float]]], dict[str, np.ndarray], dict[str, float]]:
    """Seq/s of every engine at every shape in each round, test logits, real-length sizes."""
    feeds = {e.name: shape_feeds(e, texts, real_rows) for e in engines}
    # the untimed first pass: allocations and per-shape compilation; it runs the whole test
    # split, so it also gives each engine's logits
    logits = {e.name: np.concatenate([e.run(f) for f in feeds[e.name]["all"]]) for e in engines}
    for e in engines:
        for f in feeds[e.name]["b1x128"][:2] + feeds[e.name]["b32x128"]:
            e.run(f)
    rates: dict[str, dict[str, list[float]]] = {e.name: {s: [] for s in SHAPES} for e in engines}
    for r in range(rounds):
        order = engines[r % len(engines) :] + engines[: r % len(engines)]
        for shape in SHAPES:
            for e in order:
                rates[e.name][shape].append(seq_per_s(e.run, feeds[e.name][shape]))
        print(f"round {r + 1}/{rounds} done", flush=True)
    real = feeds[FP32]["real"]
    lengths = {
        "mean_tokens": float(np.mean(np.concatenate([f["attention_mask"].sum(1) for f in real]))),
        "mean_padded_width": float(np.mean([f["input_ids"].shape[1] for f in real])),
    }
    return rates, logits, lengths


def rows_of(engines: list[Engine], rates: Any, logits: Any, y: np.ndarray) -> list[dict[str, Any]]:
    med = {e.name: {s: float(np.median(rates[e.name][s])) for s in SHAPES} for e in engines}
    return [
        {
            "engine": e.name,
            "kind": e.kind,
            **e.info,
            "accuracy": float(np.mean(logits[e.name].argmax(-1) == y)),
            "compress_accuracy": e.compress_accuracy,
            "seq_per_s": med[e.name],
            "x_fp32_eager": {s: med[e.name][s] / med[FP32][s] for s in SHAPES},
            "rounds_seq_per_s": rates[e.name],
        }
        for e in engines
    ]


def targets(rows: list[dict[str, Any]], chosen: str | None) -> list[dict[str, Any]]:
    """The issue's targets for the chosen candidate, measured (reported, not asserted)."""
    by = {r["engine"]: r for r in rows}
    if chosen not in by:
        return []
    c, fp32 = by[chosen], by[FP32]
    fastest = max(
        (r for r in rows if r["kind"] == PYTORCH), key=lambda r: r["seq_per_s"]["b32x128"]
    )
    found = [
        (f"32x128 vs the fastest PyTorch path ({fastest['engine']})", 2.0,
         c["seq_per_s"]["b32x128"] / fastest["seq_per_s"]["b32x128"]),
        ("32x128 vs PyTorch FP32 eager", 6.0, c["x_fp32_eager"]["b32x128"]),
        ("1x128 vs PyTorch FP32 eager", 4.0, c["x_fp32_eager"]["b1x128"]),
        ("test accuracy vs the parent's (FP32 eager)", 0.99, c["accuracy"] / fp32["accuracy"]),
    ]  # fmt: skip
    return [{"target": t, "floor": f, "measured": m, "met": m >= f} for t, f, m in found]


def markdown(report: dict[str, Any]) -> str:
    flags = ", ".join(f"{f} {'yes' if on else 'no'}" for f, on in report["cpu_flags"].items())
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    n = report["real_lengths"]
    lines = [
        f"# Inference benchmark ({report['base']}, {report['profile']} profile)",
        "",
        f"CPU: {report['cpu']}; flags: {flags}.",
        f"One process pinned to CPU {report['pinned_cpu']}, {report['threads']} thread per engine, "
        f"median of {report['rounds']} interleaved rounds. {versions}.",
        f"Test split of {report['data']}: {report['test_rows']} texts (accuracy on all; "
        f"{report['real_rows']} drawn at random timed at their real lengths), "
        f"{n['mean_tokens']:.1f} tokens a text; real-length batches of {BATCH} are "
        f"{n['mean_padded_width']:.1f} wide on average. "
        f"Chosen candidate: `{report['chosen']}`.",
        "",
        "| engine | structure | precision | runtime | 1x128 seq/s | x | 32x128 seq/s | x "
        "| real seq/s | x | accuracy |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        name = f"**{r['engine']}** (chosen)" if r["engine"] == report["chosen"] else r["engine"]
        cells = [f"{r['seq_per_s'][s]:.1f} | {r['x_fp32_eager'][s]:.2f}" for s in SHAPES]
        lines.append(
            f"| {name} | {r['structure']} | {r['precision']} | {r['runtime']} | "
            f"{' | '.join(cells)} | {r['accuracy']:.4f} |"
        )
    lines += ["", "x = ratio to PyTorch FP32 eager at the same shape.", ""]
    if report["targets"]:
        lines += ["## Targets (chosen candidate; reported, not asserted)", ""]
        lines += ["| target | floor | measured | met |", "| --- | ---: | ---: | --- |"]
        for t in report["targets"]:
            met = "yes" if t["met"] else "**no**"
            lines.append(f"| {t['target']} | {t['floor']:g} | {t['measured']:.3f} | {met} |")
        lines.append("")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {}
    for name in ("torch", "onnxruntime", "openvino", "transformers"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = "not installed"
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="tiny-bert", choices=("tiny-bert", "minilm"))
    ap.add_argument("--profile", help="params profile (default: smoke for tiny-bert)")
    ap.add_argument("--model-dir", type=Path, help="fine-tuned HF dir (default: build one)")
    ap.add_argument("--prepared", type=Path, help="data/prepared (default: the profile's data)")
    ap.add_argument("--compress-dir", type=Path, help="benchmark these candidates, no compress")
    ap.add_argument("--train-steps", type=int, default=60, help="when building the model")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--real-rows", type=int, default=256, help="test texts timed at their real lengths"
    )
    ap.add_argument("--cpu", type=int, help="CPU to pin to (default: the last one allowed)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    if args.compress_dir and not (args.model_dir and args.prepared):
        ap.error("--compress-dir needs --model-dir (the parent) and --prepared (its test split)")
    if args.rounds < 3:
        ap.error("--rounds: medians need at least 3")

    work = Path(tempfile.mkdtemp(prefix="tuneline-bench-"))
    os.environ.setdefault("TUNELINE_HOME", str(work / "home"))  # keep bench runs out of .tuneline
    from tuneline.config import load_params
    from tuneline.models import load_classifier

    # a given --model-dir is a project's own model: its settings are the default profile's
    tiny = args.base == "tiny-bert" and args.model_dir is None
    profile = args.profile or ("smoke" if tiny else "default")
    params = load_params(ROOT, profile, overrides={"train.max_seq_len": SEQ})
    prepared = args.prepared or prepare_data(work, params)
    model_dir = args.model_dir or build_model(
        args.base, prepared, work / "model", params, args.train_steps
    )
    if args.compress_dir:
        variant_dirs, chosen = discover(args.compress_dir)
    else:
        from tasks.compress.task import compress_model

        result = compress_model.fn(
            model_dir, prepared, params, output_dir=work / "compress", parent_run_id=None
        )
        variant_dirs, chosen = [Path(v.onnx_dir) for v in result.variants], result.chosen.name

    # Compression and training ran on every core; from here on one CPU, one thread.
    import torch

    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(THREADS)
    name, flags = cpu_info()
    print(f"{name} ({', '.join(f for f, on in flags.items() if on)}): pinned to CPU {cpu}, "
          f"{THREADS} thread", flush=True)  # fmt: skip
    model, tok = load_classifier(model_dir)
    engines = pytorch_engines(model, tok)
    engines.append(
        by_hand_ort_int8(model, tok, work / "by_hand", params.compress.opset, engines[0].encode)
    )
    engines += [candidate_engine(d) for d in variant_dirs]
    test = pd.read_parquet(prepared / "test.parquet")
    texts, y = test["text"].astype(str).tolist(), test["label"].to_numpy(dtype=np.int64)
    rates, logits, lengths = measure(engines, texts, args.rounds, args.real_rows)
    rows = rows_of(engines, rates, logits, y)
    report = {
        "base": str(args.model_dir or args.base),
        "profile": profile,
        "data": str(args.prepared or params.data.source),
        "cpu": name,
        "cpu_flags": flags,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "pinned_cpu": cpu,
        "threads": THREADS,
        "rounds": args.rounds,
        "versions": versions(),
        "test_rows": len(texts),
        "real_rows": min(args.real_rows, len(texts)),
        "real_lengths": lengths,
        "chosen": chosen,
        "targets": targets(rows, chosen),
        "results": rows,
    }
    stem = "inference" if profile == "default" else f"inference-{profile}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
