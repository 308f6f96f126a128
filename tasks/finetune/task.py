"""Fine-tune a transformer classifier on the prepared splits: torchrun, MLflow, resumable.

The task process owns the MLflow run: it creates it (params + lineage tags) before launching,
so the run exists, and is marked FAILED, even when a worker dies; rank 0 of the workers logs
the per-step loss/lr and per-eval validation metrics into that run by id; back here the final
model is scored on the test split and the metrics, confusion matrix and model are logged.
Rerunning on the same `output_dir` with the same settings resumes from the last complete
checkpoint, into the same MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.finetune.budget import Budget, plan_budget, steps_used
from tasks.finetune.checkpoints import prepare_checkpoints
from tasks.finetune.evaluate import evaluate_model, plot_confusion
from tasks.finetune.launcher import per_device_batch, run_training, world_size
from tasks.finetune.seqlen import resolve_seq_len
from tuneline import registry
from tuneline.caching import cached, finetune_key
from tuneline.config import Params
from tuneline.console import say
from tuneline.errors import TrainingError
from tuneline.io import md5_file, write_json
from tuneline.lineage import lineage_tags
from tuneline.metrics import majority_baseline
from tuneline.models import TINY
from tuneline.settings import get_settings

EXPERIMENT = "tuneline"
SPLITS = ("train", "val", "test")
# Settings that change how work is spread, not what is learned: a run may resume under others.
_LAYOUT_KEYS = {"nproc", "nnodes", "node_rank", "rdzv_endpoint", "num_threads"}


@dataclass(frozen=True)
class FinetuneResult:
    """The MLflow run, the final model directory, its test metrics (accuracy, macro_f1,
    per-class precision/recall/f1, majority_baseline, train_wall_s) and the training budget it
    was given and used, in words (for the run summary)."""

    run_id: str
    model_dir: str
    metrics: dict[str, float]
    budget: str


def read_labels(prepared_dir: Path) -> list[str]:
    """Class names from `labels.json` (index = class id).

    Args:
        prepared_dir: the prepared splits.

    Returns:
        The class names.

    Raises:
        TrainingError: a split or labels.json is missing.
    """
    missing = [s for s in (*(f"{s}.parquet" for s in SPLITS), "labels.json")]
    missing = [name for name in missing if not (prepared_dir / name).is_file()]
    if missing:
        raise TrainingError(f"{prepared_dir}: missing {', '.join(missing)} (run the data stages)")
    labels = json.loads((prepared_dir / "labels.json").read_text(encoding="utf-8"))["labels"]
    return [str(label) for label in labels]


def fingerprint(params: Params, prepared_dir: Path, labels: list[str]) -> str:
    """What a checkpoint depends on: the learning settings, the seed, the data and labels."""
    train = {k: v for k, v in params.train.model_dump().items() if k not in _LAYOUT_KEYS}
    data = {s: md5_file(prepared_dir / f"{s}.parquet") for s in ("train", "val")}
    blob = json.dumps([train, params.base.seed, data, labels], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _flat(prefix: str, obj: Any) -> dict[str, str]:
    if isinstance(obj, dict):
        out: dict[str, str] = {}
        for key, value in obj.items():
            out.update(_flat(f"{prefix}.{key}" if prefix else str(key), value))
        return out
    return {prefix: str(obj)[:6000]}


def _open_run(
    client: Any,
    output_dir: Path,
    params: Params,
    project_root: Path,
    fp: str,
    resume: Path | None,
    budget: Budget,
) -> str:
    """Reuse the run recorded for a resumable `output_dir`, else create and describe a new one."""
    record = output_dir / "run.json"
    if resume is not None and record.is_file():
        run_id = json.loads(record.read_text(encoding="utf-8"))["run_id"]
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, "resumed_from", resume.name)
        return str(run_id)
    tags = {**lineage_tags(project_root), "step": "finetune", "model": params.train.model}
    run = client.create_run(registry.experiment_id(EXPERIMENT), tags=tags, run_name="finetune")
    run_id = run.info.run_id
    from mlflow.entities import Param

    flat = {**_flat("base", params.base.model_dump()), **_flat("data", params.data.model_dump())}
    flat.update(_flat("train", params.train.model_dump()))
    flat["train.per_device_batch"] = str(per_device_batch(params.train))
    flat["train.world_size"] = str(world_size(params.train))
    flat.update(budget.as_params())
    items = [Param(k, v) for k, v in sorted(flat.items())]
    for start in range(0, len(items), 100):  # MLflow caps a batch at 100 params
        client.log_batch(run_id, params=items[start : start + 100])
    write_json(record, {"run_id": run_id, "fingerprint": fp})
    return str(run_id)


def tiny_tokenizer(prepared_dir: Path, params: Params, labels: list[str]) -> Path:
    """The tiny-bert tokenizer for this training split, built once and cached.

    The vocabulary is deterministic (tuneline.models.tiny_vocab); building it once per
    (split md5, vocab size) and handing the directory to every rank and every resume also
    saves each of them the pass over the training texts.
    """
    from tuneline.io import atomic_dir
    from tuneline.models import build_tiny_bert

    key = f"{md5_file(prepared_dir / 'train.parquet')}-{params.train.tiny_vocab_size}"
    target = get_settings().cache_dir / "tiny-tokenizers" / key
    if not (target / "tokenizer.json").is_file():
        texts = pd.read_parquet(prepared_dir / "train.parquet", columns=["text"])["text"]
        _, tokenizer = build_tiny_bert(texts.tolist(), labels, params.train)
        with atomic_dir(target) as tmp:
            tokenizer.save_pretrained(str(tmp))
    return target


def _log_results(
    client: Any, run_id: str, metrics: dict[str, float], model_dir: Path, png: Path
) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(f"test_{k}", v, now, 0) for k, v in sorted(metrics.items())]
    client.log_batch(run_id, metrics=batch)
    client.log_artifact(run_id, str(png))
    client.log_artifacts(run_id, str(model_dir), artifact_path="model")


@task(retries=0, cache_policy=NO_CACHE)
def finetune_classifier(
    prepared_dir: Path, params: Params, *, output_dir: Path, project_root: Path = Path(".")
) -> FinetuneResult:
    """Fine-tune `train.model` on the prepared splits with torchrun, score it on the test
    split, and track both in MLflow.

    Never retried: a failed training run is a finding, not a flaky I/O call. Cached (below)
    under tuneline.caching.finetune_key.

    Args:
        prepared_dir: holds train/val/test.parquet (text, label) and labels.json.
        params: all settings; `params.train` drives the training.
        output_dir: checkpoints/, model/ (the final HF dir), train.log, predictions.
        project_root: where lineage (git commit, dvc.lock, validation report) is read.

    Returns:
        The run id, the model dir and the test metrics. On a non-zero node rank of a
        multi-node run, an empty result: node 0 owns the model and the MLflow run.

    Raises:
        TrainingError: missing data, or training failed (with the log tail).
        ConfigError: batch size not divisible across processes, bad multi-node settings.
    """
    from mlflow.tracking import MlflowClient

    prepared_dir, output_dir = Path(prepared_dir), Path(output_dir)
    labels = read_labels(prepared_dir)
    per_device_batch(params.train)  # fail before creating a run
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = (
        tiny_tokenizer(prepared_dir, params, labels) if params.train.model == TINY else None
    )
    params = resolve_seq_len(params, prepared_dir, tokenizer_dir)  # train.max_seq_len: auto
    train_rows = len(pd.read_parquet(prepared_dir / "train.parquet", columns=["label"]))
    budget = plan_budget(train_rows, params.train)
    say(f"{'':9s} budget: {budget.describe()}")
    spec_path = output_dir / "spec.json"
    if params.train.node_rank > 0:
        spec = _spec(prepared_dir, params, budget, output_dir, labels, "", "", None, tokenizer_dir)
        write_json(spec_path, spec)
        run_training(spec_path, params.train, output_dir / "train.log", project_root)
        return FinetuneResult(run_id="", model_dir="", metrics={}, budget=budget.describe())
    fp = fingerprint(params, prepared_dir, labels)
    resume = prepare_checkpoints(output_dir, fp)
    settings = get_settings()
    settings.root.mkdir(parents=True, exist_ok=True)  # the sqlite store's folder
    uri = settings.tracking_uri
    client = MlflowClient(uri)
    run_id = _open_run(client, output_dir, params, project_root, fp, resume, budget)
    spec = _spec(
        prepared_dir, params, budget, output_dir, labels, run_id, uri, resume, tokenizer_dir
    )
    write_json(spec_path, spec)
    started = time.perf_counter()
    try:
        run_training(spec_path, params.train, output_dir / "train.log", project_root)
        wall = time.perf_counter() - started
        used = steps_used(client, run_id, output_dir, budget)
        metrics = score_and_log(client, run_id, prepared_dir, output_dir, labels, wall)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return FinetuneResult(
        run_id=run_id,
        model_dir=str(output_dir / "model"),
        metrics=metrics,
        budget=f"{budget.describe()}; {used}",
    )


def score_and_log(
    client: Any,
    run_id: str,
    prepared_dir: Path,
    output_dir: Path,
    labels: list[str],
    train_wall_s: float,
) -> dict[str, float]:
    """Score the final model on the test split and log metrics, confusion matrix and model.

    This is the pipeline's PyTorch evaluation: the predictions parquet
    (`output_dir/predictions-test.parquet`), `confusion_matrix.png` and the `test_*` metrics
    of the run are written here, once.

    Args:
        client: an MlflowClient on the run's store.
        run_id: the fine-tune run.
        prepared_dir: the prepared splits (test scored, train for the majority baseline).
        output_dir: holds `model/`; the plot and predictions go beside it.
        labels: class names, index = class id.
        train_wall_s: seconds the training took (logged with the metrics).

    Returns:
        The test metrics, with `majority_baseline` and `train_wall_s`.

    Raises:
        TrainingError: the model's labels differ from `labels`, or the test split is empty.
    """
    model_dir = output_dir / "model"
    evaluated = evaluate_model(model_dir, prepared_dir / "test.parquet", labels)
    train_y = pd.read_parquet(prepared_dir / "train.parquet", columns=["label"])["label"]
    test_y = pd.read_parquet(prepared_dir / "test.parquet", columns=["label"])["label"]
    metrics = {
        **evaluated.metrics,
        "majority_baseline": majority_baseline(train_y.tolist(), test_y.tolist()),
        "train_wall_s": train_wall_s,
    }
    png = output_dir / "confusion_matrix.png"
    plot_confusion(Path(evaluated.predictions_path), labels, png)
    _log_results(client, run_id, metrics, model_dir, png)
    return metrics


def _spec(
    prepared_dir: Path,
    params: Params,
    budget: Budget,
    output_dir: Path,
    labels: list[str],
    run_id: str,
    tracking_uri: str,
    resume: Path | None,
    tokenizer_dir: Path | None = None,
) -> dict[str, Any]:
    return {
        "tokenizer_dir": str(tokenizer_dir) if tokenizer_dir else None,
        "prepared_dir": str(prepared_dir.resolve()),
        "output_dir": str(output_dir.resolve()),
        "params": params.model_dump(mode="json"),
        "budget": asdict(budget),  # what the Trainer is given: epochs, max_steps
        "labels": labels,
        "run_id": run_id,
        "tracking_uri": tracking_uri,
        "resume_from": str(resume.resolve()) if resume else None,
    }


# Skipped when its inputs, params and code are unchanged (tuneline.caching).
finetune_classifier = cached(finetune_classifier, finetune_key)
