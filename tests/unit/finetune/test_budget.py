"""The training budget: auto epochs from the corpus size, explicit settings win, recorded."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tasks.finetune.budget import plan_budget, steps_per_epoch, steps_used
from tests.params import params

pytestmark = pytest.mark.unit

SMS_TRAIN_ROWS = 5963  # the SMS default's training split, augmented rows included
MOVIE_TRAIN_ROWS = 5423  # the movie-review default's (2,800 sentences + augmented copies)
SMALL_TRAIN_ROWS = 2700  # a 2,000-row corpus's (1,400 rows + augmented copies)


def _auto(**keys: Any) -> Any:
    return params("default", **{"train.epochs": 0.0, **{f"train.{k}": v for k, v in keys.items()}})


def test_params_yaml_default_is_auto_and_the_smoke_profile_keeps_its_explicit_epochs():
    assert params("default").train.epochs == 0.0
    smoke = params("smoke").train
    budget = plan_budget(360, smoke)
    assert smoke.epochs > 0 and budget.epochs == smoke.epochs
    assert budget.reason == f"train.epochs={smoke.epochs:g}"


def test_small_corpus_gets_at_least_min_steps_in_whole_epochs():
    tp = _auto(min_steps=180, max_epochs=6, batch_size=32).train
    budget = plan_budget(SMALL_TRAIN_ROWS, tp)
    assert budget.steps_per_epoch == math.ceil(SMALL_TRAIN_ROWS / 32) == 85
    assert budget.epochs == 3.0 and budget.max_steps == -1
    assert budget.total_steps == 255 >= tp.min_steps
    assert budget.total_steps - budget.steps_per_epoch < tp.min_steps  # the fewest such epochs
    assert "2700 training rows" in budget.reason and "min_steps=180" in budget.reason


def test_params_yaml_plans_min_steps_for_both_built_in_corpora():
    # SMS (5,963 training rows) and movie reviews (5,423) are alike in size: neither is left
    # after one epoch's ~180 steps; early stopping is what tells the easy one from the hard one
    tp = params("default").train
    for rows in (SMS_TRAIN_ROWS, MOVIE_TRAIN_ROWS, SMALL_TRAIN_ROWS):
        budget = plan_budget(rows, tp)
        assert tp.min_steps <= budget.total_steps < tp.min_steps + budget.steps_per_epoch
    assert tp.early_stopping_patience > 0 and tp.early_stopping_threshold > 0


def _stop_step(curve: dict[int, float], tp: Any) -> int:
    """Where the Trainer stops on `curve` (step -> val macro-F1), as HF orders it: the early
    stopping callback sees each evaluation before the Trainer updates its best metric."""
    from transformers import EarlyStoppingCallback, TrainerControl, TrainerState

    stop = EarlyStoppingCallback(tp.early_stopping_patience, tp.early_stopping_threshold)
    args = SimpleNamespace(metric_for_best_model="macro_f1", greater_is_better=True)
    state, control = TrainerState(), TrainerControl()
    for step, f1 in sorted(curve.items()):
        stop.on_evaluate(args, state, control, metrics={"eval_macro_f1": f1})
        state.best_metric = max(f1, state.best_metric or f1)
        if control.should_training_stop:
            return step
    return max(curve)


def test_early_stopping_ends_a_saturated_corpus_and_lets_an_improving_one_run():
    tp = params("default").train
    # val macro-F1 of the SMS default's MiniLM run every 50 steps (saturated from step 50),
    # held flat after its one epoch: stopped within about its old 187 steps + patience
    sms = {50: 0.9629, 100: 0.9482, 150: 0.9646, **{s: 0.9646 for s in range(200, 501, 50)}}
    assert _stop_step(sms, tp) == 50 * (1 + tp.early_stopping_patience) <= 250
    # the movie-review default's (3-epoch schedule, 400 val rows): noisy, still climbing
    movies = {50: 0.7152, 100: 0.7865, 150: 0.7886, 200: 0.8246, 250: 0.8072}
    assert _stop_step(movies, tp) == 250
    climbing = {step: 0.70 + 0.02 * i for i, step in enumerate(range(50, 551, 50))}
    assert _stop_step(climbing, tp) == 550
    # small gains below the threshold count as none
    creeping = {step: 0.80 + 0.001 * i for i, step in enumerate(range(50, 551, 50))}
    assert _stop_step(creeping, tp) == 50 * (1 + tp.early_stopping_patience)


def test_large_corpus_stays_at_one_epoch():
    budget = plan_budget(100_000, _auto(min_steps=180, batch_size=32).train)
    assert budget.epochs == 1.0 and budget.total_steps == 3125
    assert "one epoch already holds" in budget.reason


def test_epochs_are_capped_at_max_epochs():
    tp = _auto(min_steps=600, max_epochs=4, batch_size=32).train
    budget = plan_budget(100, tp)  # 4 steps an epoch would want 150 epochs
    assert budget.epochs == 4.0 and budget.total_steps == 16
    assert "capped at train.max_epochs=4" in budget.reason


def test_explicit_epochs_win_over_auto():
    tp = params("default", **{"train.epochs": 2.0, "train.min_steps": 10_000}).train
    budget = plan_budget(SMALL_TRAIN_ROWS, tp)
    assert budget.epochs == 2.0 and budget.max_steps == -1 and budget.total_steps == 170
    assert budget.reason == "train.epochs=2"


def test_max_steps_wins_over_epochs():
    tp = params("default", **{"train.max_steps": 40}).train
    budget = plan_budget(SMALL_TRAIN_ROWS, tp)
    assert budget.max_steps == 40 and budget.total_steps == 40
    assert budget.reason == "train.max_steps=40"


def test_steps_per_epoch_count_like_the_trainer_across_processes_and_accumulation():
    # 2 processes x per-device 2 x grad_accum 2: each rank gets ceil(101 / 2) = 51 rows,
    # 26 batches of 2, 13 optimizer steps (the last one accumulates a single batch)
    tp = params("default", **{"train.batch_size": 8, "train.nproc": 2, "train.grad_accum": 2}).train
    assert steps_per_epoch(101, tp) == 13
    assert steps_per_epoch(1, tp) == 1


def test_budget_is_recorded_as_params_and_described():
    budget = plan_budget(SMALL_TRAIN_ROWS, _auto(min_steps=180, max_epochs=6).train)
    recorded = budget.as_params()
    assert recorded["train.budget.epochs"] == "3.0"
    assert recorded["train.budget.steps_per_epoch"] == "85"
    assert recorded["train.budget.total_steps"] == "255"
    assert recorded["train.budget.reason"] == budget.reason
    assert recorded["train.budget.early_stopping"].startswith("after 4 evaluations (50 steps")
    assert budget.describe().startswith("3 epoch(s) x 85 steps = 255 optimizer steps (auto,")
    assert budget.describe().endswith("early stopping: " + budget.early_stopping)
    off = plan_budget(SMALL_TRAIN_ROWS, params("smoke").train)  # patience 0
    assert off.early_stopping == "off"


def test_worker_gives_the_trainer_the_planned_budget(tmp_path):
    from tasks.finetune.worker import training_args

    p = _auto(min_steps=180, max_epochs=6)
    budget = plan_budget(SMALL_TRAIN_ROWS, p.train)
    args = training_args({"output_dir": str(tmp_path), "budget": asdict(budget)}, p, 1)
    assert args.num_train_epochs == 3.0 and args.max_steps == -1
    assert args.metric_for_best_model == "macro_f1" and args.load_best_model_at_end


class _Client:
    def __init__(self) -> None:
        self.metrics: list[Any] = []

    def log_batch(self, run_id: str, metrics: list[Any]) -> None:
        self.metrics += metrics


@pytest.mark.parametrize(
    ("ran", "words"),
    [
        (150, "ran 150 of 255 steps (early stopped), best model from checkpoint-100"),
        (255, "ran 255 of 255 steps, best model from checkpoint-100"),
    ],
)
def test_steps_used_reads_the_worker_result_and_logs_the_steps(tmp_path: Path, ran, words):
    budget = plan_budget(SMALL_TRAIN_ROWS, _auto(min_steps=180, max_epochs=6).train)
    result = {"global_step": ran, "best_checkpoint": str(tmp_path / "checkpoint-100")}
    (tmp_path / "train_result.json").write_text(json.dumps(result), encoding="utf-8")
    client = _Client()
    assert steps_used(client, "run", tmp_path, budget) == words
    assert [(m.key, m.value) for m in client.metrics] == [("train_steps", float(ran))]
