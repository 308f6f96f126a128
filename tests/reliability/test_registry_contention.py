"""Many processes promoting at once against an MLflow server on SQLite.

Each round, every process reads `champion`, waits at a barrier until all have read it, then
calls `tuneline.registry.move_champion` with what it read: exactly one move per round, every
other attempt a clean "lost_race"; no exception (no "database is locked", no 500) reaches a
caller; the champion always points at a version whose artifacts verify.

Both sizes (4 x 5, and the issue's 8 x 20) run in `make reliability` only (slow): even 4 x 5
took 46 s alone and six minutes on a busy 2-core machine. `make test` keeps the short version:
two processes racing one move (tests/integration/test_registry_serving.py) and the
compare-and-set itself (tests/unit/core/test_registry_cas.py). Figures are written to
$TUNELINE_RELIABILITY_OUT/contention-<procs>x<rounds>.json when that variable is set.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers_serving import build_variant, synthetic
from tests.reliability_figures import write_figures
from tuneline.config import load_params

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
MODEL = "contention-classifier"


def free_port() -> int:
    from tasks.release.smoke import free_port as port

    return port()


@contextlib.contextmanager
def mlflow_server(base: Path, workers: int = 2) -> Iterator[tuple[str, Path]]:
    """`mlflow server` on SQLite, loopback, own process group, bounded startup."""
    from tuneline.processes import stop_group

    port = free_port()
    log_path = base / "mlflow-server.log"
    cmd = [sys.executable, "-m", "mlflow", "server"]
    cmd += ["--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}"]
    cmd += ["--artifacts-destination", str(base / "artifacts")]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=base, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                time.sleep(0.5)
            else:
                raise TimeoutError(f"mlflow server not up:\n{log_path.read_text()[-3000:]}")
            yield url, log_path
        finally:
            stop_group(proc)


def racer(
    index: int,
    targets: tuple[str, str],
    rounds: int,
    barrier: Any,
    env: dict[str, str],
    out: str,
) -> None:
    """One promoting process: every round read champion, barrier, compare-and-set.

    It promotes its own version, or its spare when its own is already champion (a move to
    the current champion would be a no-op that leaves the CAS open for a second winner).
    """
    os.environ.update(env)
    from tuneline import registry

    results = []
    for rnd in range(rounds):
        barrier.wait(timeout=300)
        entry: dict[str, Any] = {"round": rnd, "proc": index}
        started = time.perf_counter()
        try:
            expected = registry.alias_version(MODEL, "champion")
            target = targets[1] if expected == targets[0] else targets[0]
            entry["target"] = target
            barrier.wait(timeout=300)  # everyone has read the same champion
            move = registry.move_champion(MODEL, target, expected)
            entry.update(outcome=move.outcome, expected=expected, observed=move.observed)
        except Exception as exc:
            entry.update(outcome="error", error=f"{type(exc).__name__}: {exc}"[:500])
        entry["seconds"] = time.perf_counter() - started
        results.append(entry)
    Path(out).write_text(json.dumps(results))


def verify_version(version: str, dest: Path) -> None:
    """The version's artifacts download, match their recorded md5 and answer."""
    from serving.predictor import OnnxTextClassifier
    from tasks.release.register import download_version
    from tuneline import registry
    from tuneline.io import md5_file

    vdir = download_version(MODEL, version, dest / f"v{version}")
    assert md5_file(vdir / "model.onnx") == registry.version_tags(MODEL, version)["onnx_md5"]
    assert len(OnnxTextClassifier(vdir).predict(["win cash now"])) == 1


def run_contention(base: Path, procs: int, rounds: int) -> dict[str, Any]:
    params = load_params(REPO, profile="smoke").model_copy(deep=True)
    params = params.model_copy(
        update={"gate": params.gate.model_copy(update={"registered_model": MODEL})}
    )
    project = base / "project"
    (project / "data" / "prepared").mkdir(parents=True)
    synthetic(60, 0).to_parquet(project / "data" / "prepared" / "train.parquet", index=False)
    variant = build_variant(project, base / "variant", params, shuffle=False, steps=0)
    with mlflow_server(base) as (url, server_log), pytest.MonkeyPatch.context() as mpatch:
        env = {"TUNELINE_MLFLOW_TRACKING_URI": url, "TUNELINE_HOME": str(base / "home")}
        for key, value in env.items():
            mpatch.setenv(key, value)
        from tasks.release.register import register_variant
        from tuneline import registry

        first = register_variant.fn(
            variant,
            params=params,
            finetune_run_id=None,
            variant_run_id=None,
            project_root=project,
        ).version
        mlc = registry.client()
        mv = mlc.get_model_version(MODEL, first)
        # MLflow 3: the source is the logged model (models:/m-<id>); new versions name its id.
        model_id = getattr(mv, "model_id", None) or mv.source.rsplit("/", 1)[-1]
        # One version per racer, same (verified) artifacts, so any winner is servable.
        targets = [
            str(
                mlc.create_model_version(
                    MODEL, mv.source, run_id=mv.run_id, tags=mv.tags, model_id=model_id
                ).version
            )
            for _ in range(procs)
        ]
        assert registry.move_champion(MODEL, first, None).outcome == "moved"

        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(procs)
        outs = [base / f"racer-{i}.json" for i in range(procs)]
        workers = [
            ctx.Process(
                target=racer, args=(i, (targets[i], first), rounds, barrier, env, str(outs[i]))
            )
            for i in range(procs)
        ]
        started = time.perf_counter()
        for w in workers:
            w.start()
        try:
            for w in workers:
                w.join(timeout=600)
        finally:
            for w in workers:
                if w.is_alive():
                    w.kill()
                    w.join(timeout=10)
        wall = time.perf_counter() - started
        assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
        entries = [e for path in outs for e in json.loads(path.read_text())]
        champion = registry.alias_version(MODEL, "champion")
        history = registry.champion_history(MODEL)
        for version in sorted(
            {champion, *(e["target"] for e in entries if e["outcome"] == "moved")}
        ):
            verify_version(str(version), base / "verify")
        log_text = server_log.read_text(errors="replace")
    by_round: dict[int, list[dict[str, Any]]] = {}
    for e in entries:
        by_round.setdefault(e["round"], []).append(e)
    seconds = sorted(e["seconds"] for e in entries)
    return {
        "procs": procs,
        "rounds": rounds,
        "attempts": len(entries),
        "moves": sum(e["outcome"] == "moved" for e in entries),
        "lost_race": sum(e["outcome"] == "lost_race" for e in entries),
        "errors": [e for e in entries if e["outcome"] == "error"],
        "rounds_with_exactly_one_move": sum(
            sum(e["outcome"] == "moved" for e in es) == 1 for es in by_round.values()
        ),
        "by_round": by_round,
        "champion": champion,
        "history_len": len(history),
        "server_database_locked_lines": log_text.lower().count("database is locked"),
        "server_500_lines": log_text.count(" 500 "),
        "attempt_p50_s": seconds[len(seconds) // 2],
        "attempt_max_s": seconds[-1],
        "wall_s": wall,
    }


def check(report: dict[str, Any]) -> None:
    procs, rounds = report["procs"], report["rounds"]
    assert report["errors"] == [], report["errors"][:3]
    assert report["attempts"] == procs * rounds
    assert report["rounds_with_exactly_one_move"] == rounds
    assert report["moves"] == rounds and report["lost_race"] == (procs - 1) * rounds
    # Each round's racers all read the previous round's winner (a true CAS, not a lost update).
    winners = {
        rnd: next(e["target"] for e in es if e["outcome"] == "moved")
        for rnd, es in report["by_round"].items()
    }
    for rnd in range(1, rounds):
        for e in report["by_round"][rnd]:
            assert e["expected"] == winners[rnd - 1], e
        for e in report["by_round"][rnd]:
            if e["outcome"] == "lost_race":
                assert e["observed"] == winners[rnd], e
    assert report["champion"] == winners[rounds - 1]
    assert report["history_len"] == rounds + 1  # the first champion + one entry per move


@pytest.mark.slow
def test_contention_short(tmp_path: Path) -> None:
    report = run_contention(tmp_path, procs=4, rounds=5)
    write_figures(f"contention-{report['procs']}x{report['rounds']}.json", report)
    check(report)


@pytest.mark.slow
def test_contention_8_procs_20_rounds(tmp_path: Path) -> None:
    report = run_contention(tmp_path, procs=8, rounds=20)
    write_figures(f"contention-{report['procs']}x{report['rounds']}.json", report)
    check(report)
