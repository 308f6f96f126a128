"""The result cache: LRU by exact text and model version, off at size 0, counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.cache import ResultCache, model_version, prometheus_exporter

pytestmark = pytest.mark.unit


class Model:
    """Answers a text with its upper case; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> list[str]:
        self.calls.append(texts)
        return [t.upper() for t in texts]


def test_hits_return_what_the_miss_computed_in_order() -> None:
    seen: list[tuple[int, int, int]] = []
    cache: ResultCache[str] = ResultCache(8, "v1", lambda *a: seen.append(a))
    model = Model()
    assert cache.answer(["a", "b", "a"], model) == ["A", "B", "A"]
    assert model.calls == [["a", "b"]]  # a repeat inside one batch is computed once
    first = cache.answer(["b", "c"], model)
    assert first == ["B", "C"] and model.calls[-1] == ["c"]
    assert seen == [(0, 3, 2), (1, 1, 3)]


def test_same_object_is_served_on_a_hit() -> None:
    cache: ResultCache[dict[str, float]] = ResultCache(4, "v1")
    fresh = cache.answer(["x"], lambda ts: [{"p": 0.1 + 0.2} for _ in ts])[0]
    assert cache.answer(["x"], lambda ts: [{"p": 0.0} for _ in ts])[0] is fresh


def test_least_recently_used_is_evicted_at_size() -> None:
    cache: ResultCache[str] = ResultCache(2, "v1")
    model = Model()
    cache.answer(["a", "b"], model)
    cache.answer(["a"], model)  # a is now more recent than b
    cache.answer(["c"], model)  # evicts b
    assert len(cache) == 2
    cache.answer(["a", "b"], model)
    assert model.calls[-1] == ["b"]


def test_size_zero_keeps_nothing() -> None:
    seen: list[tuple[int, int, int]] = []
    cache: ResultCache[str] = ResultCache(0, "v1", lambda *a: seen.append(a))
    model = Model()
    cache.answer(["a"], model)
    cache.answer(["a"], model)
    assert model.calls == [["a"], ["a"]] and len(cache) == 0 and seen == []


def test_key_holds_the_model_version(tmp_path: Path) -> None:
    """Two versions never share an answer, even in one table."""
    (tmp_path / "model.onnx").write_bytes(b"weights 1")
    (tmp_path / "labels.json").write_text('{"labels": ["a"]}')
    v1 = model_version(tmp_path)
    (tmp_path / "labels.json").write_text('{"labels": ["b"]}')
    v2 = model_version(tmp_path)
    assert v1 != v2 and model_version(tmp_path) == v2
    cache: ResultCache[str] = ResultCache(8, v1)
    cache.answer(["t"], lambda ts: ["from v1" for _ in ts])
    cache.version = v2
    assert cache.answer(["t"], lambda ts: ["from v2" for _ in ts]) == ["from v2"]


def test_exporter_counts_hits_misses_and_size() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    cache: ResultCache[str] = ResultCache(8, "v1", prometheus_exporter(registry))
    model = Model()
    cache.answer(["a", "b"], model)
    cache.answer(["a"], model)
    text = generate_latest(registry).decode()
    assert "tuneline_cache_hits_total 1.0" in text
    assert "tuneline_cache_misses_total 2.0" in text
    assert "tuneline_cache_size 2.0" in text
