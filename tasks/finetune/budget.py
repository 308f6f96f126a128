"""The training budget: how many epochs and optimizer steps a fine-tune run gets, and why.

One epoch is plenty for a corpus of thousands of rows (the SMS default: ~190 steps) and far
too little for a small one (a 2,000-review corpus: ~85 steps, the cosine schedule already
decayed before the model has learnt much). `train.epochs: 0` (auto) gives every corpus at least
`train.min_steps` optimizer steps, in whole epochs, and at most `train.max_epochs`; early
stopping on validation macro-F1 (`train.early_stopping_patience`) ends it sooner when the
model has stopped improving. An explicit `train.epochs` or `train.max_steps` wins.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneline.config import TrainParams


@dataclass(frozen=True)
class Budget:
    """What the Trainer is given (`epochs`, `max_steps`) and what that amounts to.

    Attributes:
        epochs: `num_train_epochs` for the Trainer.
        max_steps: `max_steps` for the Trainer (-1: the epochs decide).
        steps_per_epoch: optimizer steps in one pass over the training split.
        total_steps: optimizer steps planned (early stopping may end the run sooner).
        reason: which setting decided, in words.
        early_stopping: when validation ends the run sooner, in words ("off" without it).
    """

    epochs: float
    max_steps: int
    steps_per_epoch: int
    total_steps: int
    reason: str
    early_stopping: str

    def as_params(self) -> dict[str, str]:
        """The budget as MLflow params (`train.budget.<field>`)."""
        return {f"train.budget.{k}": str(v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        """One line for the console and the run summary."""
        return (
            f"{self.epochs:g} epoch(s) x {self.steps_per_epoch} steps = {self.total_steps} "
            f"optimizer steps ({self.reason}); early stopping: {self.early_stopping}"
        )


def steps_per_epoch(train_rows: int, tp: TrainParams) -> int:
    """Optimizer steps per epoch, counted as the HF Trainer counts them.

    Each of the nproc x nnodes processes gets ceil(rows / processes) rows (the distributed
    sampler pads), in batches of the per-device size; `grad_accum` batches make one step, a
    short last group included.

    Args:
        train_rows: rows of the training split (augmented rows included).
        tp: `params.train` (batch size, process layout, gradient accumulation).

    Returns:
        At least 1.
    """
    world = tp.nproc * tp.nnodes
    per_device = max(1, tp.batch_size // (world * tp.grad_accum))
    batches = math.ceil(math.ceil(train_rows / world) / per_device)
    return max(1, math.ceil(batches / tp.grad_accum))


def plan_budget(train_rows: int, tp: TrainParams) -> Budget:
    """The budget for a training split of `train_rows` rows.

    `train.max_steps > 0` wins, then an explicit `train.epochs > 0`; with `train.epochs: 0`
    (auto) the run gets ceil(min_steps / steps_per_epoch) epochs, at least 1 and at most
    `train.max_epochs`.

    Args:
        train_rows: rows of the training split.
        tp: `params.train`.

    Returns:
        The budget, with the reason it was chosen.
    """
    spe = steps_per_epoch(train_rows, tp)
    stop = early_stopping(tp)
    if tp.max_steps > 0:
        epochs = tp.epochs or 1.0  # the Trainer goes by max_steps then
        why = f"train.max_steps={tp.max_steps}"
        return Budget(epochs, tp.max_steps, spe, tp.max_steps, why, stop)
    if tp.epochs > 0:
        total = math.ceil(tp.epochs * spe)
        return Budget(tp.epochs, -1, spe, total, f"train.epochs={tp.epochs:g}", stop)
    wanted = math.ceil(tp.min_steps / spe)
    epochs = min(max(wanted, 1), tp.max_epochs)
    if wanted > tp.max_epochs:
        why = f"capped at train.max_epochs={tp.max_epochs}"
    elif wanted <= 1:
        why = f"one epoch already holds train.min_steps={tp.min_steps}"
    else:
        why = f"the fewest whole epochs holding train.min_steps={tp.min_steps}"
    reason = f"auto, {train_rows} training rows: {why}"
    return Budget(float(epochs), -1, spe, epochs * spe, reason, stop)


def early_stopping(tp: TrainParams) -> str:
    """When validation macro-F1 ends the run sooner, in words."""
    if not tp.early_stopping_patience:
        return "off"
    return (
        f"after {tp.early_stopping_patience} evaluations ({tp.eval_steps} steps apart) without "
        f"a validation macro-F1 gain > {tp.early_stopping_threshold:g}, best model kept"
    )


def steps_used(client: Any, run_id: str, output_dir: Path, budget: Budget) -> str:
    """What the run used of its budget, from the worker's `train_result.json`, logged to MLflow.

    Args:
        client: an MlflowClient on the run's store.
        run_id: the fine-tune run.
        output_dir: holds `train_result.json` (rank 0 writes it).
        budget: the planned budget.

    Returns:
        ``ran 150 of 255 steps (early stopped; best at step 100)``-style words.
    """
    from mlflow.entities import Metric

    result = json.loads((output_dir / "train_result.json").read_text(encoding="utf-8"))
    steps = int(result["global_step"])
    best = result.get("best_checkpoint")
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric("train_steps", float(steps), now, steps)])
    words = f"ran {steps} of {budget.total_steps} steps"
    if steps < budget.total_steps:
        words += " (early stopped)"
    if best:
        words += f", best model from {Path(best).name}"
    return words
