"""Fine-tuning throughput: the pipeline's task vs a bare HF Trainer script, side by side.

Both train the same model on the same data with the same settings (batch, lr, schedule,
steps, eval/save/log cadence, seed, threads). The pipeline runs `finetune_classifier` (torchrun,
DDP wrapper, checkpoint markers, MLflow logging, loss subclass); the bare script is a plain
`Trainer.train()` in one process. Samples/s is the Trainer's own `train_samples_per_second`
(the training loop, including its evals and checkpoint saves) for both; end-to-end wall time
(process start, imports, model load, and for the pipeline MLflow + test evaluation) is
reported beside it. Target: pipeline / bare >= 0.95.

    .venv/bin/python benchmarks/bench_finetune.py [--model minilm] [--max-steps 40] [--repeats 1]

Writes benchmarks/results/finetune.json and finetune.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
TARGET = 0.95


def make_data(dest: Path, n_train: int, seed: int = 0) -> Path:
    """Two learnable classes (disjoint vocabularies) in the prepared-splits layout."""
    import pandas as pd

    rng = random.Random(seed)
    vocab = [
        ["alpha", "apple", "amber", "arrow", "anchor", "autumn", "atlas", "azure", "acorn"],
        ["bravo", "banana", "bronze", "bridge", "bottle", "breeze", "basalt", "bishop", "bloom"],
    ]
    filler = ["the", "a", "of", "and", "to", "in", "is", "it", "for", "on", "with", "as"]
    dest.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", 64), ("test", 64)):
        labels = [0 if i % 3 else 1 for i in range(n)]
        texts = []
        for y in labels:
            words = [rng.choice(vocab[y]) for _ in range(rng.randint(6, 20))]
            words += [rng.choice(filler) for _ in range(rng.randint(2, 10))]
            rng.shuffle(words)
            texts.append(" ".join(words))
        frame = pd.DataFrame({"text": texts, "label": labels, "augmented": False})
        frame["label"] = frame["label"].astype("int64")
        frame.to_parquet(dest / f"{split}.parquet", index=False)
    (dest / "labels.json").write_text(json.dumps({"labels": ["ham", "spam"]}))
    return dest


def bare(config_path: str) -> None:
    """The reference: a plain HF Trainer script, in this (single) process."""
    import pandas as pd
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from tuneline.config import Params
    from tuneline.models import TINY, build_tiny_bert, load_pretrained, resolve_model_source

    cfg = json.loads(Path(config_path).read_text())
    params = Params.model_validate(cfg["params"])
    tp = params.train
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    prepared = Path(cfg["prepared"])
    train = pd.read_parquet(prepared / "train.parquet")
    val = pd.read_parquet(prepared / "val.parquet")
    set_seed(params.base.seed)
    source = resolve_model_source(tp.model)
    if source == TINY:
        model, tokenizer = build_tiny_bert(train["text"].tolist(), ["ham", "spam"], tp)
    else:
        model, tokenizer = load_pretrained(source, ["ham", "spam"])

    def rows(df: pd.DataFrame) -> list[dict]:
        enc = tokenizer(df["text"].tolist(), truncation=True, max_length=tp.max_seq_len)
        return [
            {"input_ids": i, "attention_mask": m, "labels": int(y)}
            for i, m, y in zip(enc["input_ids"], enc["attention_mask"], df["label"], strict=True)
        ]

    args = TrainingArguments(
        output_dir=cfg["output"],
        per_device_train_batch_size=tp.batch_size,
        per_device_eval_batch_size=max(tp.batch_size, 32),
        max_steps=tp.max_steps,
        learning_rate=tp.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=tp.warmup_ratio,
        weight_decay=tp.weight_decay,
        eval_strategy="steps",
        eval_steps=tp.eval_steps,
        save_strategy="steps",
        save_steps=tp.save_steps,
        save_total_limit=tp.save_total_limit,
        logging_steps=tp.logging_steps,
        seed=params.base.seed,
        data_seed=params.base.seed,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows(train),
        eval_dataset=rows(val),
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    metrics = trainer.train().metrics
    Path(cfg["result"]).write_text(json.dumps(metrics))


def run_bare(params, prepared: Path, work: Path, threads: int) -> dict[str, float]:
    cfg = {
        "params": params.model_dump(mode="json"),
        "prepared": str(prepared),
        "output": str(work / "bare-ckpt"),
        "result": str(work / "bare.json"),
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "bare-cfg.json").write_text(json.dumps(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--bare", str(work / "bare-cfg.json")],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    metrics = json.loads((work / "bare.json").read_text())
    return {"samples_per_s": metrics["train_samples_per_second"], "wall_s": wall}


def run_pipeline(params, prepared: Path, work: Path, tag: str) -> dict[str, float]:
    from tasks.finetune.task import finetune_classifier

    out = work / f"pipeline-{tag}"
    started = time.perf_counter()
    result = finetune_classifier.fn(prepared, params, output_dir=out, project_root=work)
    wall = time.perf_counter() - started
    metrics = json.loads((out / "train_result.json").read_text())["metrics"]
    return {
        "samples_per_s": metrics["train_samples_per_second"],
        "wall_s": wall,
        "test_accuracy": result.metrics["accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="minilm", help="minilm | tiny-bert | a local HF dir")
    parser.add_argument("--rows", type=int, default=640, help="training rows (synthetic)")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved pairs; best kept")
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare(args.bare)
        return

    from tuneline.config import load_params

    overrides = {
        "train.model": args.model,
        "train.max_steps": args.max_steps,
        "train.batch_size": args.batch_size,
        "train.max_seq_len": args.max_seq_len,
        "train.num_threads": args.threads,
        "train.nproc": 1,
        "train.loss": "ce",  # the bare Trainer uses the model's own cross-entropy
        "train.early_stopping_patience": 0,
        "train.save_steps": max(args.max_steps // 2, 1),
        "train.eval_steps": max(args.max_steps // 2, 1),
        "train.logging_steps": 5,
    }
    params = load_params(REPO, "default", overrides)
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        work = Path(tmp)
        os.environ["TUNELINE_HOME"] = str(work / "home")
        prepared = make_data(work / "data" / "prepared", args.rows)
        bare_runs, pipe_runs = [], []
        for i in range(args.repeats):
            bare_runs.append(run_bare(params, prepared, work / f"b{i}", args.threads))
            pipe_runs.append(run_pipeline(params, prepared, work, str(i)))
    best_bare = max(bare_runs, key=lambda r: r["samples_per_s"])
    best_pipe = max(pipe_runs, key=lambda r: r["samples_per_s"])
    ratio = best_pipe["samples_per_s"] / best_bare["samples_per_s"]
    report = {
        "benchmark": "finetune",
        "model": args.model,
        "settings": overrides,
        "rows": args.rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "bare": bare_runs,
        "pipeline": pipe_runs,
        "ratio_samples_per_s": ratio,
        "target": TARGET,
        "meets_target": ratio >= TARGET,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "finetune.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Fine-tuning throughput ({args.model}, {args.max_steps} steps, batch "
        f"{args.batch_size}, seq {args.max_seq_len}, {args.threads} thread(s), CPU)",
        "",
        "| | train samples/s (best) | end-to-end wall s |",
        "| --- | ---: | ---: |",
        f"| bare HF Trainer | {best_bare['samples_per_s']:.1f} | {best_bare['wall_s']:.1f} |",
        f"| tuneline finetune_classifier | {best_pipe['samples_per_s']:.1f} "
        f"| {best_pipe['wall_s']:.1f} |",
        "",
        f"Ratio pipeline / bare (samples/s): **{ratio:.3f}** (target >= {TARGET}: "
        f"{'met' if ratio >= TARGET else 'NOT met'}).",
        "",
        "Wall time includes process start-up and imports; the pipeline's also holds torchrun,",
        "MLflow logging and the test-split evaluation.",
    ]
    (RESULTS / "finetune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
