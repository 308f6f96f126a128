"""Short, single-process HF Trainer runs used by compression: KD for students, brief
fine-tunes after pruning. Distributed training lives in the fine-tune task only."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

from tuneline.config import Params


def _trainer_args(out: str, params: Params, max_steps: int, epochs: float) -> Any:
    from transformers import TrainingArguments

    tp = params.train
    return TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=tp.batch_size,
        learning_rate=tp.learning_rate,
        weight_decay=tp.weight_decay,
        warmup_steps=0,
        num_train_epochs=epochs,
        max_steps=max_steps,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        seed=params.base.seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def _make_kd_trainer(teacher: Any, temperature: float, alpha: float) -> Any:
    import torch
    import torch.nn.functional as F
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """Loss = alpha * T^2 * KL(student_T || teacher_T) + (1 - alpha) * CE(labels)."""

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            with torch.no_grad():
                teacher_logits = teacher(**inputs).logits
            t = temperature
            kd = F.kl_div(
                F.log_softmax(outputs.logits / t, dim=-1),
                F.softmax(teacher_logits / t, dim=-1),
                reduction="batchmean",
            ) * (t * t)
            ce = F.cross_entropy(outputs.logits, labels)
            loss = alpha * kd + (1.0 - alpha) * ce
            return (loss, outputs) if return_outputs else loss

    return DistillTrainer


def _train(
    trainer_cls: Any,
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    params: Params,
    max_steps: int,
    epochs: float,
) -> Any:
    from transformers import DataCollatorWithPadding

    from tuneline.models import TextDataset  # the fine-tune's own dataset: one definition

    data = TextDataset(tokenizer, list(texts), list(labels), params.train.max_seq_len)
    with tempfile.TemporaryDirectory(prefix="tuneline-kd-") as out:
        trainer = trainer_cls(
            model=model,
            args=_trainer_args(out, params, max_steps, epochs),
            train_dataset=data,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        trainer.train()
    model.eval()
    return model


def distill(
    teacher: Any,
    student: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    params: Params,
) -> Any:
    """Train `student` against `teacher` with the KD loss on the training rows.

    Uses compress.distill_temperature / distill_alpha, compress.distill_max_steps (-1 = run
    compress.distill_epochs), and the train section's batch size and learning rate.
    """
    from transformers import Trainer

    cp = params.compress
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    trainer_cls = _make_kd_trainer(teacher, cp.distill_temperature, cp.distill_alpha)
    assert issubclass(trainer_cls, Trainer)
    student.train()
    return _train(
        trainer_cls,
        student,
        tokenizer,
        texts,
        labels,
        params,
        cp.distill_max_steps,
        cp.distill_epochs,
    )


def finetune_steps(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    params: Params,
    steps: int,
) -> Any:
    """A brief plain cross-entropy fine-tune (used after pruning to recover accuracy)."""
    from transformers import Trainer

    model.train()
    return _train(Trainer, model, tokenizer, texts, labels, params, steps, 1.0)
