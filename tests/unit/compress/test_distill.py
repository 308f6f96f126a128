"""Knowledge distillation (tasks/compress/distill.py) on a tiny BERT: it stops once the student
holds the teacher's val accuracy within the budget, otherwise runs its step budget and returns
the best state it measured; the teacher is never changed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tasks.compress.distill import distill
from tasks.compress.variants import build_student
from tests.params import params
from tests.synthetic import LABELS, synthetic_rows, train_briefly

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

MAX_STEPS = 8
EVAL_STEPS = 2


def settings(budget: float, max_steps: int = MAX_STEPS) -> Any:
    return params(
        "smoke",
        **{
            "compress.accuracy_budget": budget,
            "compress.distill_max_steps": max_steps,
            "compress.distill_eval_steps": EVAL_STEPS,
        },
    )


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    """A briefly trained tiny BERT teacher, its tokenizer and small train/val splits."""
    import torch

    from tuneline.models import build_tiny_bert

    torch.set_num_threads(1)
    train, val = synthetic_rows(96, 1, 10), synthetic_rows(24, 2, 10)
    split = {
        "train": (train["text"].tolist(), train["label"].tolist()),
        "val": (val["text"].tolist(), val["label"].tolist()),
    }
    teacher, tokenizer = build_tiny_bert(split["train"][0], LABELS, settings(0.5).train)
    train_briefly(teacher, tokenizer, *split["train"], steps=20)
    return {"teacher": teacher, "tokenizer": tokenizer, **split}


def student_of(tiny: dict[str, Any], p: Any) -> Any:
    return build_student(tiny["teacher"], p.compress.distill_layers)


def val_accuracy(model: Any, tiny: dict[str, Any], p: Any) -> float:
    from tuneline.models import torch_logits

    texts, labels = tiny["val"]
    logits = torch_logits(model, tiny["tokenizer"], texts, p.train.max_seq_len)
    return float(np.mean(logits.argmax(axis=1) == np.asarray(labels)))


def run(tiny: dict[str, Any], p: Any) -> tuple[Any, dict[str, float | str]]:
    student = student_of(tiny, p)
    return distill(tiny["teacher"], student, tiny["tokenizer"], tiny["train"], tiny["val"], p)


def test_a_reachable_target_stops_training_at_the_first_evaluation_that_meets_it(tiny):
    # alternating labels: even a constant prediction scores 0.5 >= 0.3 x the teacher's accuracy
    p = settings(0.3)
    student, report = run(tiny, p)
    assert report["stopped"] == "target"
    assert report["steps"] == EVAL_STEPS < MAX_STEPS
    assert report["target_val_accuracy"] == pytest.approx(
        0.3 * float(report["teacher_val_accuracy"])
    )
    assert float(report["val_accuracy"]) >= float(report["target_val_accuracy"])
    assert report["val_accuracy"] == val_accuracy(student, tiny, p)
    assert not student.training


def test_an_unreachable_target_runs_the_step_budget_and_returns_the_best_evaluation(
    tiny, monkeypatch
):
    import tuneline.models as models

    p = settings(2.0)
    seen: list[float] = []
    real = models.torch_logits

    def spy(model: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        logits = real(model, *args, **kwargs)
        if model is not tiny["teacher"]:
            assert model.training is False
            seen.append(float(np.mean(logits.argmax(axis=1) == np.asarray(tiny["val"][1]))))
        return logits

    monkeypatch.setattr(models, "torch_logits", spy)
    student, report = run(tiny, p)
    monkeypatch.undo()
    assert report["stopped"] == "max_steps"
    assert report["steps"] == MAX_STEPS
    assert len(seen) == MAX_STEPS // EVAL_STEPS  # every EVAL_STEPS steps, the last one included
    assert report["val_accuracy"] == max(seen) == val_accuracy(student, tiny, p)
    assert not student.training


def test_the_best_state_is_restored_when_a_later_evaluation_is_worse(tiny, monkeypatch):
    # scripted val accuracies: the second evaluation is the best, the last is the worst
    import tuneline.models as models

    p = settings(2.0)
    labels = np.asarray(tiny["val"][1])
    script = iter([0.5, 0.75, 0.75, 0.25])
    states: list[dict[str, Any]] = []
    real = models.torch_logits

    def scripted(model: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        logits = real(model, *args, **kwargs)
        if model is tiny["teacher"]:
            return logits
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        right = np.arange(len(labels)) < round(next(script) * len(labels))
        predicted = np.where(right, labels, 1 - labels)
        return np.eye(len(LABELS), dtype=np.float32)[predicted]

    monkeypatch.setattr(models, "torch_logits", scripted)
    student, report = run(tiny, p)
    monkeypatch.undo()
    assert len(states) == 4
    assert report["val_accuracy"] == 0.75
    best = states[1]  # the earliest of the two 0.75 evaluations
    restored = student.state_dict()
    assert all(bool((restored[k] == v).all()) for k, v in best.items())
    assert not all(bool((restored[k] == v).all()) for k, v in states[-1].items())


def test_the_teacher_is_unchanged(tiny):
    import torch

    p = settings(2.0, max_steps=EVAL_STEPS)
    teacher = tiny["teacher"]
    before = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    grads = {k: v.requires_grad for k, v in teacher.named_parameters()}
    mode = teacher.training
    _, report = run(tiny, p)
    assert report["steps"] == EVAL_STEPS
    after = teacher.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {k: v.requires_grad for k, v in teacher.named_parameters()} == grads
    assert teacher.training == mode


def test_students_sharing_a_teacher_cache_run_the_teacher_once_per_batch(tiny):
    # a depth search distils several students on the same seeded batches: the second student
    # reads the teacher's logits from the cache and trains exactly as it would without it
    import torch

    p = settings(2.0, max_steps=4)
    teacher = tiny["teacher"]
    calls: list[int] = []
    hook = teacher.register_forward_hook(lambda *_: calls.append(1))
    cache: dict[tuple[Any, ...], Any] = {}
    try:
        args = (tiny["tokenizer"], tiny["train"], tiny["val"], p)
        torch.manual_seed(0)
        distill(teacher, student_of(tiny, p), *args, cache)
        after_first = len(calls)
        torch.manual_seed(0)
        second, _ = distill(teacher, student_of(tiny, p), *args, cache)
        after_second = len(calls)
        torch.manual_seed(0)
        uncached, _ = distill(teacher, student_of(tiny, p), *args)
    finally:
        hook.remove()
    assert len(cache) == 4  # one entry per optimizer step's batch
    # the first KD ran the teacher on its 4 batches (and its val accuracy); the second only on val
    assert after_first - (after_second - after_first) == 4
    assert all(
        torch.allclose(a, b)
        for a, b in zip(second.state_dict().values(), uncached.state_dict().values(), strict=True)
    )
    assert len(calls) - after_second == after_first  # without the cache: the teacher again
