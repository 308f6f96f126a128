"""The one latency function (serving/timing.py) on a fake clock: what is timed, the warm-up
calls, and the percentiles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from serving import timing

pytestmark = pytest.mark.unit


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """perf_counter returns the next stamp; each timed call i lasts i+1 ms."""
    durations = [(i + 1) / 1000.0 for i in range(10)]
    stamps = list(itertools.accumulate(x for d in durations for x in (0.0, d)))
    it = iter(stamps)
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(it))
    return durations


@pytest.mark.parametrize("warmup", [0, 3])
def test_percentiles_of_each_call_after_untimed_warmup(clock: list[float], warmup: int):
    seen: list[int] = []
    got = timing.latency_ms(seen.append, list(range(10)), warmup=warmup)
    assert seen == list(range(warmup)) + list(range(10))  # warm-up on the first items, untimed
    ms = np.arange(1, 11, dtype=float)
    assert got == pytest.approx(
        {
            "latency_p50_ms": float(np.percentile(ms, 50)),
            "latency_p95_ms": float(np.percentile(ms, 95)),
            "latency_p99_ms": float(np.percentile(ms, 99)),
        }
    )
    assert got["latency_p50_ms"] == pytest.approx(5.5)


def test_no_inputs_gives_zeros():
    assert timing.latency_ms(lambda x: x, []) == {
        "latency_p50_ms": 0.0,
        "latency_p95_ms": 0.0,
        "latency_p99_ms": 0.0,
    }
