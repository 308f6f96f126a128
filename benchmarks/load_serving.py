"""Bounded open-loop HTTP load generator for the served classifier (asyncio, raw HTTP/1.1).

Open loop: requests are sent on a fixed schedule whatever the server does, and latency is
measured from the *scheduled* send time, so a stalled server cannot hide its queueing
(no coordinated omission). Every phase has a fixed duration and every request a client
timeout, so a run always ends.

Status classes: 2xx = accepted; 429 (BentoML max_concurrency) and 503 (adaptive-batching
overload) = shed, the designed answer to overload; 408 = the guard's request timeout; any
other 5xx (500/502/504) = server error; "timeout"/"conn_error" = the client gave up / could
not connect.

Usage against a running server:
    python benchmarks/load_serving.py --url http://127.0.0.1:3000 --token T --out results.json
The reliability suite (tests/reliability/test_serving_load.py) serves a Bento and calls
`run_profile`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import random
import sys
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.synthetic import HAM, SPAM

SHED = (429, 503)
T = TypeVar("T")
WORDS = HAM + SPAM


def make_texts(n: int, words: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(n)]


def zipf_stream(
    texts: Sequence[str], n: int, *, repeat_share: float, exponent: float, seed: int
) -> list[str]:
    """`n` texts in which `repeat_share` of them repeat an earlier one, popularity Zipf.

    A repeat picks the text first sent k-th with weight 1/k**exponent (the earliest are the
    most popular); every other text is new: `texts` in turn (their length mix), and once they
    run out, again with a pass number appended, so a new text is never one seen before.

    Args:
        texts: the source texts (e.g. the test split's).
        n: length of the stream.
        repeat_share: the fraction of the stream that repeats (0.5: half).
        exponent: the Zipf exponent (1.0-1.2 is typical of query logs).
        seed: the random seed.

    Returns:
        The stream, in sending order.
    """
    import bisect
    import itertools

    rng = random.Random(seed)
    order = list(texts)
    rng.shuffle(order)
    fresh = (
        text if rounds == 0 else f"{text} ({rounds})"
        for rounds in itertools.count()
        for text in order
    )
    cumulative = list(itertools.accumulate(1.0 / k**exponent for k in range(1, n + 1)))
    seen: list[str] = []
    stream = []
    for _ in range(n):
        if seen and rng.random() < repeat_share:
            pick = bisect.bisect_left(cumulative, rng.random() * cumulative[len(seen) - 1])
            stream.append(seen[min(pick, len(seen) - 1)])
        else:
            seen.append(next(fresh))
            stream.append(seen[-1])
    return stream


@dataclass
class PhaseResult:
    """Figures of one phase (latencies in ms, of accepted = 2xx requests)."""

    name: str
    offered_rps: float
    duration_s: float
    sent: int
    statuses: dict[str, int]
    accepted: int
    shed: int
    server_errors: int
    client_errors: int
    throughput_rps: float  # accepted per second of the phase
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    wall_s: float  # first scheduled send to last answer
    send_lag_p99_ms: float | None  # how late the generator sent (>> 0: generator-bound)
    notes: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)  # per second of the phase


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def classify(status: int | str) -> str:
    if isinstance(status, str):
        return "client"
    if 200 <= status < 300:
        return "accepted"
    if status in SHED:
        return "shed"
    if status >= 500:
        return "server_error"
    return "client"  # 4xx other than 429 (408 from the guard, 400 ...)


# status, latency from scheduled send, send lag, scheduled send (perf_counter seconds)
Outcome = tuple[int | str, float, float, float]


def tally(results: list[Outcome]) -> tuple[collections.Counter[str], list[float]]:
    """Outcomes by status class, and the latencies (ms) of the accepted ones."""
    kinds: collections.Counter[str] = collections.Counter()
    ok = []
    for status, latency, *_ in results:
        kind = classify(status)
        kinds[kind] += 1
        if kind == "accepted":
            ok.append(latency * 1000)
    return kinds, ok


def timeline(results: list[Outcome], start: float, bucket_s: float = 1.0) -> list[dict[str, Any]]:
    """Per `bucket_s` of scheduled send time: sent, accepted, shed, p99 of accepted (ms)."""
    buckets: dict[int, list[Outcome]] = collections.defaultdict(list)
    for outcome in results:
        buckets[int((outcome[3] - start) // bucket_s)].append(outcome)
    rows = []
    for k in sorted(buckets):
        kinds, ok = tally(buckets[k])
        rows.append(
            {
                "t_s": k * bucket_s,
                "sent": len(buckets[k]),
                "accepted": kinds["accepted"],
                "shed": kinds["shed"],
                "other": len(buckets[k]) - kinds["accepted"] - kinds["shed"],
                "p99_ms": percentile(ok, 99),
            }
        )
    return rows


def summarise(
    name: str, offered: float, duration: float, results: list[Outcome], wall: float
) -> PhaseResult:
    statuses = collections.Counter(str(o[0]) for o in results)
    kinds, ok = tally(results)
    lags = [o[2] * 1000 for o in results]
    return PhaseResult(
        name=name,
        offered_rps=offered,
        duration_s=duration,
        sent=len(results),
        statuses=dict(sorted(statuses.items())),
        accepted=kinds["accepted"],
        shed=kinds["shed"],
        server_errors=kinds["server_error"],
        client_errors=kinds["client"],
        throughput_rps=kinds["accepted"] / max(duration, wall) if wall else 0.0,
        p50_ms=percentile(ok, 50),
        p95_ms=percentile(ok, 95),
        p99_ms=percentile(ok, 99),
        max_ms=max(ok) if ok else None,
        wall_s=wall,
        send_lag_p99_ms=percentile(lags, 99),
        timeline=timeline(results, min(o[3] for o in results)) if results else [],
    )


class RawHttpClient:
    """A lean HTTP/1.1 keep-alive client on asyncio streams, for the load generator only.

    httpx costs about a millisecond of CPU per request; at a few hundred requests a second
    that saturates the generator's core, its event loop falls behind, and the latency it
    measures is its own queue. This client sends pre-encoded requests and reads only the
    status line, the headers it needs and the body, so the generator stays cheap.

    Args:
        base_url: http://host:port of the server.
        timeout_s: per request, connect to last body byte; then the request is a "timeout".
        max_connections: connections open at most; a request waits for a free one.
    """

    def __init__(self, base_url: str, *, timeout_s: float, max_connections: int) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.timeout_s = timeout_s
        self.idle: collections.deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            collections.deque()
        )
        self.slots = asyncio.Semaphore(max_connections)

    async def __aenter__(self) -> RawHttpClient:
        # No garbage-collection pause while a phase runs (it would show up as server
        # latency); a phase holds a few thousand small objects, collected at its end.
        gc.collect()
        gc.disable()
        return self

    async def __aexit__(self, *exc: object) -> None:
        while self.idle:
            _, writer = self.idle.popleft()
            writer.close()
        gc.enable()
        gc.collect()

    async def request(self, raw: bytes) -> int | str:
        """Send one pre-encoded request; the status code, "timeout" or "conn_error"."""
        async with self.slots:
            conn = self.idle.popleft() if self.idle else None
            try:
                status = await asyncio.wait_for(self._send(conn, raw), self.timeout_s)
            except TimeoutError:
                return "timeout"
            except (OSError, asyncio.IncompleteReadError, ValueError):
                return "conn_error"
            return status

    async def _send(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, raw: bytes
    ) -> int:
        if conn is None:
            return await self._exchange(None, raw)
        try:
            return await self._exchange(conn, raw)
        except (ConnectionError, asyncio.IncompleteReadError):
            # The server closed an idle keep-alive connection: once more on a new one.
            return await self._exchange(None, raw)

    async def _exchange(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, raw: bytes
    ) -> int:
        if conn is None:
            conn = await asyncio.open_connection(self.host, self.port)
        reader, writer = conn
        keep = False
        try:
            writer.write(raw)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            else:
                await reader.readexactly(int(headers.get("content-length", "0")))
            keep = headers.get("connection", "").lower() != "close"
            return status
        finally:
            if keep:
                self.idle.append(conn)
            else:
                writer.close()


class Loader:
    """One payload set (pre-encoded requests); phases are methods."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str = "",
        texts_per_request: int = 16,
        words_per_text: int = 40,
        timeout_s: float = 10.0,
        max_connections: int = 512,
        texts: Sequence[str] | None = None,
        payloads: int = 64,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Synthetic texts of `words_per_text` words, or requests drawn in order from `texts`
        # (e.g. the test split's, for its real length mix).
        if texts:
            self.payloads = [
                {
                    "texts": [
                        texts[(i * texts_per_request + j) % len(texts)]
                        for j in range(texts_per_request)
                    ]
                }
                for i in range(payloads)
            ]
        else:
            self.payloads = [
                {"texts": make_texts(texts_per_request, words_per_text, seed=i)}
                for i in range(payloads)
            ]
        url = urlsplit(self.base_url)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.requests = []
        for payload in self.payloads:
            body = json.dumps(payload).encode("utf-8")
            head = (
                f"POST /predict HTTP/1.1\r\nHost: {url.netloc}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{auth}\r\n"
            )
            self.requests.append(head.encode("latin-1") + body)
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        # Requests go out in payload order across phases (a phase does not restart at the
        # first payload): a stream with repeats (zipf_stream) keeps its share of repeats.
        self.cursor = 0

    def client(self) -> RawHttpClient:
        return RawHttpClient(
            self.base_url, timeout_s=self.timeout_s, max_connections=self.max_connections
        )

    async def _one(self, client: RawHttpClient, i: int, scheduled: float) -> Outcome:
        lag = time.perf_counter() - scheduled
        raw, self.cursor = self.requests[self.cursor % len(self.requests)], self.cursor + 1
        status = await client.request(raw)
        return status, time.perf_counter() - scheduled, lag, scheduled

    async def open_loop(self, name: str, rate_rps: float, duration_s: float) -> PhaseResult:
        """Send at `rate_rps` for `duration_s` seconds, then wait for every answer."""
        async with self.client() as client:
            start = time.perf_counter()
            tasks = []
            n = int(rate_rps * duration_s)
            for i in range(n):
                scheduled = start + i / rate_rps
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self._one(client, i, scheduled)))
            results = await asyncio.gather(*tasks)
            wall = time.perf_counter() - start
        return summarise(name, rate_rps, duration_s, list(results), wall)

    async def burst(self, name: str, n: int) -> PhaseResult:
        """`n` requests at once."""
        async with self.client() as client:
            start = time.perf_counter()
            results = await asyncio.gather(*(self._one(client, i, start) for i in range(n)))
            wall = time.perf_counter() - start
        phase = summarise(name, float(n), wall, list(results), wall)
        phase.notes["burst_size"] = n
        return phase

    async def closed_loop(self, name: str, concurrency: int, duration_s: float) -> PhaseResult:
        """`concurrency` workers, each sending as soon as its last answer came: capacity."""
        results: list[Outcome] = []
        async with self.client() as client:
            deadline = time.perf_counter() + duration_s

            async def worker(w: int) -> None:
                i = w
                while time.perf_counter() < deadline:
                    results.append(await self._one(client, i, time.perf_counter()))
                    i += concurrency

            start = time.perf_counter()
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
            wall = time.perf_counter() - start
        phase = summarise(name, 0.0, wall, results, wall)
        phase.notes["concurrency"] = concurrency
        return phase

    async def max_rate_under_p99(
        self, name: str, capacity_rps: float, p99_ms: float, step_s: float
    ) -> dict[str, Any]:
        """Highest accepted throughput whose p99 <= `p99_ms` with nothing shed (a rate sweep)."""
        best: dict[str, Any] = {"throughput_rps": 0.0, "p99_ms": None, "offered_rps": None}
        steps = []
        for fraction in (0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2):
            phase = await self.open_loop(f"{name}@{fraction:g}", capacity_rps * fraction, step_s)
            steps.append(asdict(phase))
            good = (
                phase.p99_ms is not None
                and phase.p99_ms <= p99_ms
                and phase.shed == 0
                and phase.server_errors == 0
                and phase.client_errors == 0
            )
            if good and phase.throughput_rps > best["throughput_rps"]:
                best = {
                    "throughput_rps": phase.throughput_rps,
                    "p99_ms": phase.p99_ms,
                    "offered_rps": phase.offered_rps,
                }
            if not good and fraction >= 0.7:
                break
        return {**best, "p99_bound_ms": p99_ms, "steps": steps}


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop where installed (a cheaper generator), else the default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def pin_to(cpus: set[int]) -> set[int] | None:
    """Pin this process to `cpus` (where the OS allows it); returns the old set."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    old = os.sched_getaffinity(0)
    # Not intersected with `old`: a process pinned elsewhere (the generator on CPU 1) may
    # move to the server's CPU to measure there. CPUs the OS refuses leave it where it is.
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, cpus)
    return old


@contextlib.contextmanager
def pinned(cpus: set[int]) -> Iterator[None]:
    """`pin_to(cpus)` for the duration of the block, then the old CPU set again."""
    old = pin_to(cpus)
    try:
        yield
    finally:
        if old:
            os.sched_setaffinity(0, old)


async def run_profile(
    base_url: str,
    *,
    token: str = "",
    capacity_s: float = 6.0,
    phase_s: float = 10.0,
    burst: int = 200,
    concurrency: int = 16,
) -> dict[str, Any]:
    """Capacity, then steady 70 %, 3x overload, a burst and recovery (all bounded)."""
    loader = Loader(base_url, token=token)
    await loader.open_loop("warmup", 5, 2)
    capacity = await loader.closed_loop("capacity", concurrency, capacity_s)
    cap = max(capacity.throughput_rps, 1.0)
    phases = [
        capacity,
        await loader.open_loop("steady_70pct", 0.7 * cap, phase_s),
        await loader.open_loop("overload_3x", 3.0 * cap, phase_s),
        await loader.burst("burst", burst),
        await loader.open_loop("recovery_70pct", 0.7 * cap, phase_s),
    ]
    return {
        "url": base_url,
        "capacity_rps": cap,
        "texts_per_request": len(loader.payloads[0]["texts"]),
        "phases": {p.name: asdict(p) for p in phases},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default=os.environ.get("TUNELINE_API_TOKEN", ""))
    parser.add_argument("--phase-s", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cpu", type=int, default=None, help="pin the generator to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        pin_to({args.cpu})
    result = run(run_profile(args.url, token=args.token, phase_s=args.phase_s))
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
