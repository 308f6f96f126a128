"""An in-process LRU of answers for frequent texts, keyed on the exact text and the model.

The key holds the served model's version (a digest of its variant files) beside the text, so
an answer is never served for another model, even if a cache outlived one. Values are the
answer objects themselves: a hit returns what the miss computed, so it serializes to the same
bytes. One lock guards the table (BentoML may run two batches at once in its thread pool).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

V = TypeVar("V")
_CHUNK = 1 << 20


def model_version(model_dir: Path | str) -> str:
    """A digest of every file of a variant directory (names and bytes), as the cache's key.

    Args:
        model_dir: the variant served (model.onnx, tokenizer, labels, variant.json).

    Returns:
        The md5 hex digest; it changes when any file of the variant does.
    """
    digest = hashlib.md5(usedforsecurity=False)
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        digest.update(path.relative_to(model_dir).as_posix().encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


class ResultCache(Generic[V]):
    """Least-recently-used answers, at most `size` of them (0: nothing is kept).

    Args:
        size: entries kept; 0 turns the cache off (every text is computed).
        version: the model's version (`model_version`), part of every key.
        on_change: called with (hits, misses, size) after each lookup, e.g. to export them.
    """

    def __init__(
        self,
        size: int,
        version: str,
        on_change: Callable[[int, int, int], None] | None = None,
    ) -> None:
        self.size = size
        self.version = version
        self.on_change = on_change
        self._table: OrderedDict[tuple[str, str], V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._table)

    def answer(self, texts: Sequence[str], compute: Callable[[list[str]], list[V]]) -> list[V]:
        """One answer per text, in order: cached ones, and `compute` on the rest at once.

        Args:
            texts: the texts of a batch (repeats within it are computed once).
            compute: answers for a list of texts, in its order.

        Returns:
            The answers, in the order of `texts`.
        """
        if self.size <= 0:
            return compute(list(texts))
        found: dict[str, V] = {}
        with self._lock:
            for text in texts:
                key = (self.version, text)
                if key in self._table:
                    self._table.move_to_end(key)
                    found[text] = self._table[key]
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        hits = sum(1 for t in texts if t in found)
        if missing:
            fresh = compute(missing)
            with self._lock:
                for text, value in zip(missing, fresh, strict=True):
                    found[text] = value
                    self._table[(self.version, text)] = value
                    self._table.move_to_end((self.version, text))
                while len(self._table) > self.size:
                    self._table.popitem(last=False)
        if self.on_change is not None:
            self.on_change(hits, len(texts) - hits, len(self._table))
        return [found[t] for t in texts]


def prometheus_exporter(registry: Any = None) -> Callable[[int, int, int], None]:
    """An `on_change` that exports hits, misses and size on /metrics (prometheus_client).

    Args:
        registry: a CollectorRegistry (tests); None = the default one, which BentoML's
            /metrics reads (in its multiprocess directory once it serves).

    Returns:
        The callback; create it once per process (a name registers once).
    """
    from prometheus_client import REGISTRY, Counter, Gauge

    registry = registry or REGISTRY
    hits = Counter("tuneline_cache_hits", "Texts answered from the result cache", registry=registry)
    misses = Counter(
        "tuneline_cache_misses", "Texts the result cache did not hold", registry=registry
    )
    # livesum: the entries of every live worker together (each worker has its own cache)
    size = Gauge(
        "tuneline_cache_size",
        "Entries in the result cache",
        multiprocess_mode="livesum",
        registry=registry,
    )

    def export(n_hits: int, n_misses: int, n_size: int) -> None:
        if n_hits:
            hits.inc(n_hits)
        if n_misses:
            misses.inc(n_misses)
        size.set(n_size)

    return export
