"""What each torchrun process runs: `python -m tasks.finetune.worker <spec.json>`.

The spec (written by tasks/finetune/task.py) holds the params dump, the data and output paths,
the MLflow run id and the checkpoint to resume from. Every rank trains; rank 0 alone writes
checkpoint markers, MLflow metrics, the final model and `train_result.json`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from tasks.finetune.callbacks import MlflowStepLogger, ProgressCallback
from tasks.finetune.checkpoints import CompletionMarkerCallback
from tasks.finetune.launcher import LAUNCHER_PID_ENV, PROGRESS_FILE, per_device_batch
from tasks.finetune.losses import WeightedLossTrainer, class_weights
from tuneline.config import Params, TrainParams
from tuneline.errors import ConfigError
from tuneline.io import atomic_dir, write_json
from tuneline.metrics import classification_metrics
from tuneline.models import (
    TINY,
    TextDataset,
    build_tiny_bert,
    check_safe_model_dir,
    load_pretrained,
)
from tuneline.models import resolve_model_source as resolve_source
from tuneline.processes import tie_to_parent
from tuneline.truncation import cut_of, write_cut

BEST_METRIC = "macro_f1"


def precision_flags(choice: str, cuda: bool, bf16_ok: bool) -> tuple[bool, bool]:
    """(bf16, fp16) for TrainingArguments. 'auto': bf16 where supported, else fp16, on CUDA.

    Raises:
        ConfigError: fp16 asked for without CUDA.
    """
    if choice == "auto":
        return (bf16_ok, not bf16_ok) if cuda else (False, False)
    if choice == "fp16" and not cuda:
        raise ConfigError(["train.precision=fp16 needs CUDA; use fp32, bf16 or auto on CPU"])
    return choice == "bf16", choice == "fp16"


def _set_dropout(model: torch.nn.Module, p: float) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
    cfg = model.config
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
        if hasattr(cfg, name):
            setattr(cfg, name, p)


def _freeze(model: Any, tp: TrainParams) -> None:
    base = model.base_model
    if tp.freeze_embeddings:
        embeddings = getattr(base, "embeddings", None) or model.get_input_embeddings()
        for param in embeddings.parameters():
            param.requires_grad = False
    if tp.freeze_layers:
        layers = getattr(getattr(base, "encoder", None), "layer", None)
        if layers is None:
            raise ConfigError([f"train.freeze_layers: cannot find encoder layers of {type(base)}"])
        if tp.freeze_layers > len(layers):
            raise ConfigError([f"train.freeze_layers={tp.freeze_layers} > {len(layers)} layers"])
        for layer in layers[: tp.freeze_layers]:
            for param in layer.parameters():
                param.requires_grad = False


def build_model(
    tp: TrainParams, texts: list[str], labels: list[str], tokenizer_dir: str | None
) -> Any:
    """Model + tokenizer per `train.model`, with dropout, freezing and LoRA applied.

    For tiny-bert, `tokenizer_dir` is the tokenizer trained once by the task (see
    `tasks.finetune.task.tiny_tokenizer`): retraining it here could give each rank other token ids.
    """
    source = resolve_source(tp.model)
    model: Any
    if source == TINY:
        model, tokenizer = build_tiny_bert(texts, labels, tp)
        if tokenizer_dir:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
            tokenizer.model_max_length = tp.max_seq_len
            if len(tokenizer) != model.config.vocab_size:
                model.resize_token_embeddings(len(tokenizer))
    else:
        model, tokenizer = load_pretrained(source, labels)
    if tp.dropout is not None:
        _set_dropout(model, tp.dropout)
    if tp.lora:
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=tp.lora_r,
            lora_alpha=tp.lora_alpha,
            lora_dropout=tp.lora_dropout,
        )
        model = get_peft_model(model, lora)
        if tp.gradient_checkpointing:
            model.enable_input_require_grads()
    else:
        _freeze(model, tp)
    return model, tokenizer


def training_args(spec: dict[str, Any], params: Params, world: int) -> TrainingArguments:
    tp = params.train
    cuda = torch.cuda.is_available()
    bf16, fp16 = precision_flags(tp.precision, cuda, cuda and torch.cuda.is_bf16_supported())
    early = tp.early_stopping_patience > 0
    extra: dict[str, Any] = {}
    if world > 1:  # setting a backend in a single-process run makes accelerate fail
        extra["ddp_backend"] = "nccl" if cuda else "gloo"
    per_device = per_device_batch(tp)
    return TrainingArguments(
        output_dir=str(Path(spec["output_dir"]) / "checkpoints"),
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=max(per_device, 32),
        gradient_accumulation_steps=tp.grad_accum,
        num_train_epochs=spec["budget"]["epochs"],  # tasks/finetune/budget.py planned them
        max_steps=spec["budget"]["max_steps"],
        learning_rate=tp.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=tp.warmup_ratio,  # a float < 1 is a ratio of the total steps in 5.x
        weight_decay=tp.weight_decay,
        eval_strategy="steps",
        eval_steps=tp.eval_steps,
        save_strategy="steps",
        save_steps=tp.save_steps,
        save_total_limit=tp.save_total_limit,
        logging_strategy="steps",
        logging_steps=tp.logging_steps,
        load_best_model_at_end=early,
        metric_for_best_model=BEST_METRIC if early else None,
        greater_is_better=True if early else None,
        seed=params.base.seed,
        data_seed=params.base.seed,
        bf16=bf16,
        fp16=fp16,
        use_cpu=not cuda,
        activation_checkpointing=tp.gradient_checkpointing,  # 5.x name of gradient_checkpointing
        report_to="none",
        label_names=["labels"],
        dataloader_num_workers=0,
        disable_tqdm=True,
        ddp_find_unused_parameters=False,  # torchrun makes even 1 process a DDP run
        **extra,
    )


def _compute_metrics(labels: list[str]) -> Any:
    def compute(pred: Any) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        out = classification_metrics(pred.label_ids, np.argmax(logits, axis=-1), labels)
        out.pop("confusion")
        return out

    return compute


def save_final(
    model: Any, tokenizer: Any, labels: list[str], tp: TrainParams, target: Path
) -> None:
    """Write the plain HF model dir (LoRA merged) + tokenizer + labels.json atomically."""
    if tp.lora:
        model = model.merge_and_unload()
    tokenizer.model_max_length = tp.max_seq_len  # inference truncates like training did
    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        write_json(tmp / "labels.json", {"labels": labels})
        write_cut(tmp, cut_of(tp))  # evaluation and export cut texts as training did
        check_safe_model_dir(tmp)


def run(spec: dict[str, Any]) -> dict[str, Any] | None:
    """Train per `spec`; returns the result dict on rank 0, None on other ranks."""
    params = Params.model_validate(spec["params"])
    tp = params.train
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads())
    labels: list[str] = spec["labels"]
    prepared = Path(spec["prepared_dir"])
    train_df = pd.read_parquet(prepared / "train.parquet")
    val_df = pd.read_parquet(prepared / "val.parquet")
    set_seed(params.base.seed)  # before the head is initialised
    resume = spec.get("resume_from")
    texts = train_df["text"].tolist()
    model, tokenizer = build_model(tp, texts, labels, spec.get("tokenizer_dir"))
    train_ds = TextDataset(tokenizer, texts, train_df["label"].tolist(), tp.max_seq_len, cut_of(tp))
    val_texts, val_labels = val_df["text"].tolist(), val_df["label"].tolist()
    val_ds = TextDataset(tokenizer, val_texts, val_labels, tp.max_seq_len, cut_of(tp))
    progress = ProgressCallback(Path(spec["output_dir"]) / PROGRESS_FILE if rank == 0 else None)
    callbacks: list[TrainerCallback] = [
        CompletionMarkerCallback(),
        MlflowStepLogger(spec["tracking_uri"], spec["run_id"], rank),
        progress,
    ]
    if tp.early_stopping_patience:
        stop = EarlyStoppingCallback(
            early_stopping_patience=tp.early_stopping_patience,
            early_stopping_threshold=tp.early_stopping_threshold,
        )
        callbacks.append(stop)
    weights = class_weights(train_df["label"].tolist(), len(labels)) if tp.loss != "ce" else None
    trainer = WeightedLossTrainer(
        model=model,
        args=training_args(spec, params, world),
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_compute_metrics(labels),
        callbacks=callbacks,
        loss_kind=tp.loss,
        loss_weights=weights,
        focal_gamma=tp.focal_gamma,
    )
    output = trainer.train(resume_from_checkpoint=resume)
    if rank != 0:
        return None
    save_final(trainer.model, tokenizer, labels, tp, Path(spec["output_dir"]) / "model")
    return {
        "global_step": trainer.state.global_step,
        "start_step": progress.start_step or 0,
        "steps_run": progress.steps_run,
        "resumed_from": resume,
        "world_size": world,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "metrics": output.metrics,
        "log_history": trainer.state.log_history,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tasks.finetune.worker <spec.json>", file=sys.stderr)
        return 2
    # torchrun put us in a session of our own: do not outlive the agent. Checked against the
    # pid it published, not getppid(): it may have died while we imported torch above.
    agent = os.environ.get(LAUNCHER_PID_ENV)
    tie_to_parent(int(agent) if agent else None)
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = run(spec)
    if result is not None:
        write_json(Path(spec["output_dir"]) / "train_result.json", result)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
