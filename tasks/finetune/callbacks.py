"""Trainer callbacks of the fine-tune workers: MLflow step logging, resume bookkeeping."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from tuneline.io import write_json

_KEY_RE = re.compile(r"[^\w\-. /]")  # characters MLflow refuses in a metric key


class MlflowStepLogger(TrainerCallback):
    """Logs every Trainer log (loss, lr, eval_* metrics) to an existing MLflow run, rank 0 only."""

    def __init__(self, tracking_uri: str, run_id: str, rank: int) -> None:
        self.run_id = run_id if rank == 0 else ""
        self._client: Any = None
        if self.run_id:
            # Opening the store costs seconds (imports, schema check): pay it before the
            # training loop, not inside its first logging step.
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri)
            self._client.get_run(self.run_id)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if not state.is_world_process_zero or not self.run_id or not logs:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(_KEY_RE.sub("_", k), float(v), now, state.global_step)
            for k, v in logs.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
        ]
        if metrics:
            self._client.log_batch(self.run_id, metrics=metrics)


class ProgressCallback(TrainerCallback):
    """Records where this process started and how many optimizer steps it ran; with a path
    (rank 0), writes the step, the planned total and the last loss / val macro-F1 there after
    every step, for the task's console progress (tasks/finetune/launcher.py reads it)."""

    def __init__(self, path: Path | None = None) -> None:
        self.start_step: int | None = None
        self.steps_run = 0
        self.path = path
        self.last: dict[str, float] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.start_step = state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        for key in ("loss", "eval_macro_f1"):
            if logs and isinstance(logs.get(key), int | float):
                self.last[key] = float(logs[key])

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.start_step is None:
            self.start_step = state.global_step - 1
        self.steps_run += 1
        if self.path is not None:
            now = {"step": state.global_step, "total": state.max_steps, **self.last}
            write_json(self.path, now)
