"""Short, single-process HF Trainer runs used by compression: KD for students, brief
fine-tunes after pruning. Distributed training lives in the fine-tune task only."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneline.config import Params
from tuneline.truncation import cut_of


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


def _make_kd_trainer(
    teacher: Any, temperature: float, alpha: float, cache: dict[tuple[Any, ...], Any]
) -> Any:
    import torch
    import torch.nn.functional as F
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """Loss = alpha * T^2 * KL(student_T || teacher_T) + (1 - alpha) * CE(labels).

        The teacher's logits of a batch are kept in `cache`, keyed on the batch's tensors: the
        students of one depth search see the same seeded batches, so the (eval-mode, unchanged)
        teacher runs once per batch, not once per student.
        """

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            key = tuple(
                (k, tuple(v.shape), v.detach().cpu().numpy().tobytes())
                for k, v in sorted(inputs.items())
            )
            teacher_logits = cache.get(key)
            if teacher_logits is None:
                with torch.no_grad():
                    teacher_logits = cache[key] = teacher(**inputs).logits.detach()
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


def _val_accuracy(
    model: Any, tokenizer: Any, val: tuple[list[str], list[int]], params: Params
) -> float:
    from tuneline.models import torch_logits

    texts, labels = val
    logits = torch_logits(
        model, tokenizer, texts, params.train.max_seq_len, cut=cut_of(params.train)
    )
    return float(np.mean(logits.argmax(axis=1) == np.asarray(labels)))


def _make_early_stop(
    student: Any, tokenizer: Any, val: tuple[list[str], list[int]], params: Params, target: float
) -> Any:
    from transformers import TrainerCallback

    class EarlyStopOnTarget(TrainerCallback):
        """Val accuracy every `distill_eval_steps` optimizer steps and at the end; keeps the best
        state (earliest on ties) in memory and stops training once the target is reached."""

        def __init__(self) -> None:
            self.best_accuracy = -1.0
            self.best_state: dict[str, Any] | None = None
            self.last_step = -1
            self.reached = False

        def _evaluate(self, step: int) -> None:
            accuracy = _val_accuracy(student, tokenizer, val, params)
            student.train()  # torch_logits left it in eval mode; training goes on
            self.last_step = step
            if accuracy > self.best_accuracy:
                self.best_accuracy = accuracy
                self.best_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
            self.reached = self.reached or accuracy >= target

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step % params.compress.distill_eval_steps == 0:
                self._evaluate(state.global_step)
                if self.reached:
                    control.should_training_stop = True
            return control

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if self.last_step != state.global_step:
                self._evaluate(state.global_step)
            return control

    return EarlyStopOnTarget()


def _train(
    trainer_cls: Any,
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    params: Params,
    max_steps: int,
    epochs: float,
    callbacks: Sequence[Any] = (),
) -> int:
    """Train `model` in place (left in eval mode) and return the optimizer steps run."""
    from transformers import DataCollatorWithPadding

    from tuneline.models import TextDataset  # the fine-tune's own dataset: one definition

    data = TextDataset(
        tokenizer, list(texts), list(labels), params.train.max_seq_len, cut_of(params.train)
    )
    with tempfile.TemporaryDirectory(prefix="tuneline-kd-") as out:
        trainer = trainer_cls(
            model=model,
            args=_trainer_args(out, params, max_steps, epochs),
            train_dataset=data,
            data_collator=DataCollatorWithPadding(tokenizer),
            callbacks=list(callbacks),
        )
        trainer.train()
    model.eval()
    return int(trainer.state.global_step)


def distill(
    teacher: Any,
    student: Any,
    tokenizer: Any,
    train: tuple[list[str], list[int]],
    val: tuple[list[str], list[int]],
    params: Params,
    teacher_cache: dict[tuple[Any, ...], Any] | None = None,
) -> tuple[Any, dict[str, float | str]]:
    """Train `student` against `teacher` with the KD loss until it holds the teacher's val
    accuracy within compress.accuracy_budget, or its step budget runs out.

    The student's val accuracy is measured every compress.distill_eval_steps optimizer steps and
    at the end; training stops at the first measurement >= accuracy_budget x the teacher's. The
    best measured state (earliest on ties) is loaded back, so the student returned is never worse
    on val than an earlier measurement. The step budget is compress.distill_max_steps (-1 = run
    compress.distill_epochs). The KD loss uses compress.distill_temperature / distill_alpha; the
    train section gives batch size, learning rate and max_seq_len. The teacher is not changed.

    Args:
        teacher: the fine-tuned classifier (a transformers sequence classifier).
        student: the model to train, e.g. `build_student(teacher, ...)`; trained in place.
        tokenizer: the tokenizer both share.
        train: training texts and label ids.
        val: validation texts and label ids (used for the stop rule and the best state).
        params: the settings.
        teacher_cache: the teacher's logits per batch, shared by the students of one search
            (None: this call's own).

    Returns:
        The student (eval mode, best measured state) and a report: ``steps`` (optimizer steps
        run), ``val_accuracy`` (the returned student's), ``teacher_val_accuracy``,
        ``target_val_accuracy`` (accuracy_budget x the teacher's) and ``stopped`` ("target" when
        the target was reached, "max_steps" when the step budget ran out first).
    """
    from transformers import Trainer

    cp = params.compress
    teacher_was_training = teacher.training
    teacher_accuracy = _val_accuracy(teacher, tokenizer, val, params)  # leaves it in eval mode
    target = cp.accuracy_budget * teacher_accuracy
    trainer_cls = _make_kd_trainer(
        teacher,
        cp.distill_temperature,
        cp.distill_alpha,
        {} if teacher_cache is None else teacher_cache,
    )
    assert issubclass(trainer_cls, Trainer)
    early_stop = _make_early_stop(student, tokenizer, val, params, target)
    student.train()
    steps = _train(
        trainer_cls,
        student,
        tokenizer,
        *train,
        params,
        cp.distill_max_steps,
        cp.distill_epochs,
        callbacks=[early_stop],
    )
    teacher.train(teacher_was_training)
    if early_stop.best_state is not None:
        student.load_state_dict(early_stop.best_state)
    student.eval()
    report: dict[str, float | str] = {
        "steps": steps,
        "val_accuracy": early_stop.best_accuracy,
        "teacher_val_accuracy": teacher_accuracy,
        "target_val_accuracy": target,
        "stopped": "target" if early_stop.reached else "max_steps",
    }
    return student, report


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
    _train(Trainer, model, tokenizer, texts, labels, params, steps, 1.0)
    return model
