"""`tuneline serve --follow` under steady load: a promotion and a rollback fail no request.

Real pieces: an MLflow SQLite registry, two tiny models gated and packaged as Bentos, the
`tuneline serve --follow` command in a child process (its proxy on a free loopback port, the
champion's Bento behind it), and closed-loop clients posting through the proxy the whole
time. The champion moves (promote v2), then back (`rollback_champion`, what `tuneline
rollback` calls). Every answer must be 200 and equal, probability for probability, to what one
of the two models computes in process, and name that version in `x-tuneline-version`; after
each move the answers must become the new champion's and stay so, and the old Bento must be
stopped. SIGTERM then stops the command and every Bento it started.

Figures (switch times, request counts, latency through the proxy) go to serve-follow.json
(TUNELINE_RELIABILITY_OUT, `make reliability`); no figure is asserted. Slow (three Bento
starts, about 3-5 min on 2 busy cores): excluded from `make test`.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from serving.predictor import OnnxTextClassifier
from tasks.release.gate import gate_version
from tasks.release.package import package_version
from tasks.release.promote import promote_version
from tasks.release.proxy import VERSION_HEADER
from tasks.release.register import register_variant
from tasks.release.smoke import SmokeResult, free_port
from tests.helpers_serving import build_variant, registry_project
from tests.processes import descendants, wait_gone
from tests.reliability_figures import write_figures
from tuneline import registry
from tuneline.processes import start_child, stop_group

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc"),
]

REPO = Path(__file__).resolve().parents[2]
MODEL = "follow-classifier"
TOKEN = "follow-token"
CLIENTS = 4
INTERVAL_S = 0.2  # each client's pace: a steady 20 requests/s in all, under what 2 cores serve
SWITCH_WAIT_S = 300.0  # a bound on the wait, not a figure: the figures are measured


class Load:
    """CLIENTS threads posting `probe` through the proxy, each one request per INTERVAL_S
    (or back to back when slower); every answer recorded as (sent, answered, status or error,
    version header, P(first label))."""

    def __init__(self, base: str, probe: str) -> None:
        self.base = base
        self.probe = probe
        self.stop = threading.Event()
        self.records: list[tuple[float, float, str, str, float]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(CLIENTS)]
        self.started = 0.0

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=self.base, timeout=60.0, headers=headers) as client:
            sent = time.monotonic()
            while not self.stop.wait(max(0.0, sent + INTERVAL_S - time.monotonic())):
                sent = time.monotonic()
                try:
                    resp = client.post("/predict", json={"texts": [self.probe]})
                    status = str(resp.status_code)
                    version = resp.headers.get(VERSION_HEADER, "")
                    prob = resp.json()[0]["probabilities"] if status == "200" else {}
                    p0 = float(next(iter(prob.values()))) if prob else -1.0
                except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
                    status, version, p0 = type(exc).__name__, "", -1.0
                with self.lock:
                    self.records.append((sent, time.monotonic(), status, version, p0))

    def since(self, t: float) -> list[tuple[float, float, str, str, float]]:
        with self.lock:
            return [r for r in self.records if r[0] >= t]

    def wait_for_version(self, version: str, after: float, timeout_s: float) -> float:
        """When answers sent after `after` became `version`'s for good (20 in a row)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            recent = self.since(after)
            if len(recent) >= 20 and all(r[3] == version for r in recent[-20:]):
                first = next(i for i, r in enumerate(recent) if r[3] == version)
                return recent[first][1]
            time.sleep(0.2)
        raise AssertionError(f"answers did not become v{version}'s within {timeout_s:.0f} s")


def bentos_of(pid: int) -> list[int]:
    return [p for p, cmd in descendants(pid).items() if "-m bentoml serve" in cmd]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two versions gated and packaged; v1 is champion, v2 only registered and packaged."""
    base = tmp_path_factory.mktemp("follow")
    updates = {"gate.registered_model": MODEL, "serve.follow_poll_s": 0.5}
    with registry_project(base, updates, token=TOKEN) as (root, params):
        versions: dict[str, str] = {}
        predictions: dict[str, list[Any]] = {}
        gates: dict[str, Any] = {}
        test = pd.read_parquet(root / "data" / "prepared" / "test.parquet")
        # the trained models are sure of the test texts; words they never saw are in between
        texts = [*test["text"].astype(str).tolist(), "hello", "zzz", "ok", "the"]
        # fewer steps for v2: less sure of unseen words (the probe), and the gate passes it
        for run, steps in (("one", 60), ("two", 30)):
            variant = build_variant(root, base / run, params, shuffle=False, steps=steps)
            version = register_variant.fn(
                variant,
                params=params,
                finetune_run_id=f"ft-{run}",
                variant_run_id=f"var-{run}",
                project_root=root,
            ).version
            predictions[version] = OnnxTextClassifier(variant).predict(texts)
            versions[run] = version
            bento = package_version.fn(MODEL, version, params=params)
            # gated here, off the load (the gate times the candidate); v2 promoted in the test
            gates[version] = gate_version.fn(MODEL, version, params=params, project_root=root)
            failed = [r for r in gates[version].decision.reasons if not r.startswith("PASS")]
            assert gates[version].decision.promote, failed
            if run == "one":  # the follower smoke-tests each Bento itself before a switch
                smoke = SmokeResult(True, "smoke-tested by the follower", bento.tag)
                assert promote_version.fn(gates[version], smoke).outcome == "promoted"
        # the probe: the text on which the two models' answers differ most
        p0 = {
            v: [next(iter(p.probabilities.values())) for p in ps] for v, ps in predictions.items()
        }
        one, two = versions["one"], versions["two"]
        gaps = [abs(a - b) for a, b in zip(p0[one], p0[two], strict=True)]
        i = max(range(len(texts)), key=gaps.__getitem__)
        assert gaps[i] > 1e-3, f"the two models answer alike (largest gap {gaps[i]:.1e})"
        answers = {one: p0[one][i], two: p0[two][i]}
        yield {
            "gates": gates,
            "root": root,
            "params": params,
            "versions": versions,
            "answers": answers,
            "probe": texts[i],
        }


def test_promotion_and_rollback_fail_no_request(project: dict[str, Any], tmp_path: Path) -> None:
    root, params = project["root"], project["params"]
    one, two = project["versions"]["one"], project["versions"]["two"]
    port = free_port()
    cmd = [sys.executable, "-m", "flows.cli", "serve", "--follow", "--profile", "smoke"]
    cmd += ["--root", str(root), "--port", str(port)]
    log_path = tmp_path / "follow.log"
    with open(log_path, "wb") as log:
        proc = start_child(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, log=log, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    load = Load(base, project["probe"])
    figures: dict[str, Any] = {}
    events: dict[str, float] = {}
    try:
        deadline = time.monotonic() + SWITCH_WAIT_S
        while True:  # the proxy answers 503 until the first Bento is ready
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        load.started = time.monotonic()
        for thread in load.threads:
            thread.start()
        time.sleep(5.0)  # steady load on v1 first
        assert {r[3] for r in load.since(0)} == {one}

        gate = project["gates"][two]
        tag = registry.version_tags(MODEL, two)["bento_tag"]
        moved = events["promoted"] = time.monotonic()
        assert promote_version.fn(gate, SmokeResult(True, "follower", tag)).outcome == "promoted"
        promoted_s = load.wait_for_version(two, moved, SWITCH_WAIT_S) - moved
        old_left = _wait_one_bento(proc.pid)

        back = events["rolled_back"] = time.monotonic()
        assert registry.rollback_champion(MODEL).outcome == "moved"
        rolled_s = load.wait_for_version(one, back, SWITCH_WAIT_S) - back
        old_left_after_rollback = _wait_one_bento(proc.pid)
        time.sleep(3.0)  # load on the rolled-back champion
    finally:
        load.stop.set()
        for thread in load.threads:
            thread.join(timeout=90)
        bentos = bentos_of(proc.pid)
        family = list(descendants(proc.pid))
        os.kill(proc.pid, signal.SIGTERM)
        try:
            rc = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            rc = None
        stop_group(proc)
    left = wait_gone(timeout_s=60, pids=family)
    records = load.since(0)
    failed = [r for r in records if r[2] != "200"]
    answers = project["answers"]
    wrong = [r for r in records if r[2] == "200" and abs(r[4] - answers[r[3]]) > 1e-4]
    latencies = sorted(r[1] - r[0] for r in records if r[2] == "200")
    figures = {
        "machine": {"cpu": _cpu_model(), "arch": platform.machine(), "cores": os.cpu_count()},
        "clients": CLIENTS,
        "interval_s": INTERVAL_S,
        "events_s": {k: round(v - load.started, 2) for k, v in events.items()},
        "failed_at_s": [round(r[0] - load.started, 2) for r in failed],
        "poll_s": params.serve.follow_poll_s,
        "requests": len(records),
        "failed": len(failed),
        "failed_examples": failed[:5],
        "wrong_answers": len(wrong),
        "promotion_switch_s": round(promoted_s, 2),
        "rollback_switch_s": round(rolled_s, 2),
        "bentos_after_promotion": old_left,
        "bentos_after_rollback": old_left_after_rollback,
        "latency_ms": {
            "p50": round(1000 * latencies[len(latencies) // 2], 1),
            "p99": round(1000 * latencies[int(len(latencies) * 0.99)], 1),
        },
        "exit_code_on_sigterm": rc,
        "left_after_sigterm": len(left),
    }
    write_figures("serve-follow.json", figures)
    print(figures)
    assert not failed, failed[:10]
    assert not wrong, wrong[:10]
    assert {r[3] for r in records} == {one, two}
    assert old_left == 1 and old_left_after_rollback == 1, "an old Bento was not stopped"
    assert len(bentos) == 1
    assert rc == 128 + signal.SIGTERM, log_path.read_text()[-3000:]
    assert not left, left


def _wait_one_bento(pid: int, timeout_s: float = 90.0) -> int:
    """How many Bentos the follower runs once the old one was stopped (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while len(found := bentos_of(pid)) > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    return len(found)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"
