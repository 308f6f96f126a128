"""Watch a running fine-tune trial: report its validation macro-F1 to Optuna, stop it if pruned.

The fine-tune's torchrun runs in a process group of its own (tasks/finetune/launcher.py) and
logs every evaluation into its MLflow run, whose id the task writes to `run.json` before it
launches. This thread reads that run's `eval_macro_f1` history, reports each new value to the
trial and, when the pruner says so, stops that one process group (the torchrun this process
started for this trial, found by its spec path): the task then fails and the trial is pruned.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

VAL_METRIC = "eval_macro_f1"  # what the worker logs per evaluation (tasks/finetune/worker.py)
MLFLOW_PARENT_TAG = "mlflow.parentRunId"


class TrialMonitor(threading.Thread):
    """Polls one trial's MLflow run every `interval_s` until `stop()`."""

    def __init__(
        self,
        trial: Any,
        output_dir: Path,
        client: Any,
        tags: dict[str, str],
        interval_s: float,
    ) -> None:
        super().__init__(daemon=True, name=f"tune-trial-{trial.number}")
        self.trial, self.output_dir, self.client, self.tags = trial, output_dir, client, tags
        self.interval_s = interval_s
        self.run_id: str | None = None
        self.pruned_at: int | None = None  # the step whose value pruned the trial
        self.reported: dict[int, float] = {}
        self._done = threading.Event()

    def stop(self) -> None:
        """End the polling (and read what the run logged last)."""
        self._done.set()
        self.join(timeout=60)
        self.poll()

    def run(self) -> None:
        while not self._done.wait(self.interval_s):
            self.poll()
            if self.pruned_at is not None:
                return

    def poll(self) -> None:
        """Tag the run as a child of the study's run once it exists; report new values."""
        if self.run_id is None:
            record = self.output_dir / "run.json"
            try:
                self.run_id = str(json.loads(record.read_text(encoding="utf-8"))["run_id"])
            except (OSError, ValueError, KeyError):
                return  # not created yet
            for key, value in self.tags.items():
                self.client.set_tag(self.run_id, key, value)
        if self.pruned_at is not None:
            return
        for metric in sorted(
            self.client.get_metric_history(self.run_id, VAL_METRIC), key=lambda m: m.step
        ):
            if metric.step in self.reported:
                continue
            self.reported[metric.step] = float(metric.value)
            self.trial.report(float(metric.value), metric.step)
            if self.trial.should_prune():
                self.pruned_at = int(metric.step)
                self._stop_training()
                return

    def best(self) -> float | None:
        """The best validation macro-F1 reported (the Trainer keeps the best checkpoint)."""
        return max(self.reported.values()) if self.reported else None

    def _stop_training(self) -> None:
        import psutil

        spec = str(self.output_dir / "spec.json")
        for child in psutil.Process(os.getpid()).children():
            try:
                if any(spec in part for part in child.cmdline()):
                    os.killpg(child.pid, signal.SIGTERM)  # its own session: pgid == pid
            except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
                continue
