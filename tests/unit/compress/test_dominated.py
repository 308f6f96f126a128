"""Structure dominance in the search (tasks/compress/candidates.Search.dominated): once a KD
student held the val accuracy target and has a passed candidate, a later structure with more
encoder weights is skipped with a reason naming both; otherwise it is built."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tasks.compress.candidates import Candidate, Search, encoder_weights

pytestmark = pytest.mark.unit


def model(hidden: int, layers: int) -> torch.nn.Module:
    m = torch.nn.Module()
    m.embeddings = torch.nn.Embedding(1000, hidden)  # not counted: a lookup, not compute
    m.encoder = torch.nn.Sequential(*[torch.nn.Linear(hidden, hidden) for _ in range(layers)])
    return m


def passed(structure: str) -> Candidate:
    return Candidate(
        name=f"{structure}_bf16_ov",
        structure=structure,
        precision="bf16",
        runtime="openvino",
        method="m",
        dir=Path("."),
        settings={},
        parity={},
        scores={},
        fusions={},
        lost=[],
        use_gpu=False,
    )


def test_encoder_weights_leave_the_embeddings_out():
    assert encoder_weights(model(8, 2)) == 2 * (8 * 8 + 8)


def test_a_bigger_structure_after_a_student_that_held_the_target_is_dominated():
    search = Search(reference={})
    assert search.dominated("distilled", model(8, 1), {"kd_stopped": "target"}) is None
    search.candidates.append(passed("distilled"))
    why = search.dominated("pruned", model(8, 3), {"sparsity": 0.3})
    assert why is not None and why.startswith("dominated: distilled held")
    assert "pruned" in why


def test_no_dominance_without_a_held_target_a_passed_candidate_or_fewer_weights():
    missed = Search(reference={})
    assert missed.dominated("distilled", model(8, 1), {"kd_stopped": "max_steps"}) is None
    missed.candidates.append(passed("distilled"))
    assert missed.dominated("pruned", model(8, 3), {}) is None  # the student missed its target

    unbuilt = Search(reference={})
    unbuilt.dominated("distilled", model(8, 1), {"kd_stopped": "target"})
    assert unbuilt.dominated("pruned", model(8, 3), {}) is None  # no distilled candidate passed

    smaller = Search(reference={})
    smaller.dominated("distilled", model(8, 3), {"kd_stopped": "target"})
    smaller.candidates.append(passed("distilled"))
    assert smaller.dominated("pruned", model(8, 1), {}) is None  # fewer weights than the student
