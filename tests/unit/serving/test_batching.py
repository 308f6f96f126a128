"""Batches are run in length buckets and answered in request order; workers x threads."""

from __future__ import annotations

import numpy as np
import pytest

from serving.tokens import BUCKET_MIN_ROWS, length_buckets
from tasks.release.package import split_cores

pytestmark = pytest.mark.unit


def test_buckets_hold_every_row_once_shortest_first() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 128, size=64)
    buckets = length_buckets(lengths)
    rows = np.concatenate(buckets)
    assert sorted(rows.tolist()) == list(range(64))
    assert np.all(np.diff(lengths[rows]) >= 0)
    assert len(buckets) > 1
    # each bucket but a short one at the end holds BUCKET_MIN_ROWS, or the ratio cut it
    assert all(len(b) >= BUCKET_MIN_ROWS for b in buckets[:-1])


def test_short_texts_are_not_padded_to_a_long_one() -> None:
    lengths = np.array([120] + [5] * 20)
    buckets = length_buckets(lengths)
    assert [b.tolist() for b in buckets] == [list(range(1, 21)), [0]]


def test_small_batches_stay_one_run() -> None:
    assert [b.tolist() for b in length_buckets(np.array([3, 100, 7]))] == [[0, 2, 1]]
    assert length_buckets(np.array([], dtype=np.int64)) == []


@pytest.mark.parametrize(
    ("workers", "threads", "cores", "split"),
    [(0, 0, 8, (8, 1)), (0, 2, 8, (4, 2)), (2, 0, 8, (2, 4)), (3, 5, 8, (3, 5)), (0, 4, 2, (1, 4))],
)
def test_zero_workers_or_threads_split_the_cores(
    workers: int, threads: int, cores: int, split: tuple[int, int]
) -> None:
    assert split_cores(workers, threads, cores) == split
