"""Promote: smoke-test the built Bento over HTTP, then move @champion by compare-and-set.

The Bento is started as `bentoml serve <tag>` on a free loopback port in its own process
group, asked for /readyz in a bounded loop, sent test texts, and its answers compared with
in-process ORT on the same variant; the group is always killed afterwards. Only then is
`champion` moved, and only if it still points where the gate read it (see
tuneline.registry.move_champion: re-read and set under a file lock).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from prefect import task

from serving.predictor import OnnxTextClassifier
from tasks.release.gate import GateResult
from tasks.release.package import BentoResult, bentoml_env
from tuneline import registry
from tuneline.config import Params
from tuneline.lineage import PREPARED
from tuneline.processes import start_child, stop_group
from tuneline.settings import get_settings


@dataclass(frozen=True)
class SmokeResult:
    """Did the served Bento answer like the in-process model?"""

    passed: bool
    reason: str
    tag: str


@dataclass(frozen=True)
class PromotionResult:
    """Final outcome of one promotion attempt (a value, never an exception trace)."""

    outcome: Literal["promoted", "refused", "lost_race", "unchanged", "held"]
    name: str
    version: str
    champion: str | None  # champion after this attempt
    previous_champion: str | None  # champion the gate was run against
    reasons: tuple[str, ...]
    bento_tag: str | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_bento(
    tag: str, *, port: int, host: str = "127.0.0.1", log_path: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `bentoml serve tag` in its own process group for the duration of the block."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    cmd = [sys.executable, "-m", "bentoml", "serve", tag, "--host", host, "--port", str(port)]
    proc = start_child(cmd, env=bentoml_env(), log=log)
    try:
        yield proc
    finally:
        stop_group(proc)
        if log_path:
            log.close()  # type: ignore[union-attr]


def wait_ready(base_url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Poll /readyz until 200, the process dies, or `timeout_s` passes."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/readyz", timeout=2.0).status_code == 200:
                return True
        time.sleep(0.5)
    return False


def smoke_test_bento(
    bento: BentoResult, *, params: Params, project_root: Path | str = "."
) -> SmokeResult:
    """Serve the Bento on a free loopback port and compare its answers with in-process ORT."""
    import httpx

    texts = (
        pd.read_parquet(Path(project_root) / PREPARED / "test.parquet")["text"]
        .astype(str)
        .tolist()[: params.gate.smoke_texts]
    )
    expected = OnnxTextClassifier(bento.variant_dir).predict(texts)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    token = get_settings().api_token or os.environ.get("TUNELINE_API_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    log_path = get_settings().root / "logs" / f"smoke-{bento.tag.replace(':', '-')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with serve_bento(bento.tag, port=port, log_path=log_path) as proc:
        if not wait_ready(base, proc, params.gate.smoke_timeout_s):
            return SmokeResult(
                False, f"Bento not ready within timeout (log: {log_path})", bento.tag
            )
        try:
            resp = httpx.post(
                f"{base}/predict", json={"texts": texts}, headers=headers, timeout=60.0
            )
        except httpx.HTTPError as exc:
            return SmokeResult(False, f"request failed: {exc}", bento.tag)
    if resp.status_code != 200:
        return SmokeResult(False, f"HTTP {resp.status_code}: {resp.text[:300]}", bento.tag)
    got = resp.json()
    if len(got) != len(expected):
        return SmokeResult(False, f"{len(got)} answers for {len(expected)} texts", bento.tag)
    for i, (served, local) in enumerate(zip(got, expected, strict=True)):
        if served["label"] != local.label:
            return SmokeResult(False, f"text {i}: {served['label']} != {local.label}", bento.tag)
        diff = max(abs(served["probabilities"][k] - v) for k, v in local.probabilities.items())
        if diff > params.gate.smoke_atol:
            return SmokeResult(False, f"text {i}: probabilities differ by {diff:.2e}", bento.tag)
    return SmokeResult(True, f"Bento answered {len(texts)} texts like in-process ORT", bento.tag)


def promote_version(gate: GateResult, smoke: SmokeResult) -> PromotionResult:
    """Move @champion to the gated version if gate and smoke passed and nobody moved it since.

    Every outcome is audited. Returns a PromotionResult; "lost_race" when champion no longer
    points at the version the gate compared against.
    """
    reasons = (*gate.decision.reasons, f"{'PASS' if smoke.passed else 'FAIL'} {smoke.reason}")
    name, version = gate.name, gate.version
    if not (gate.decision.promote and smoke.passed):
        result = PromotionResult(
            "refused", name, version, gate.champion_version, gate.champion_version, reasons
        )
    else:
        move = registry.move_champion(name, version, expected=gate.champion_version)
        if move.outcome == "moved":
            result = PromotionResult(
                "promoted", name, version, version, gate.champion_version, reasons, smoke.tag
            )
        else:
            lost = (
                f"LOST THE RACE: champion moved from {gate.champion_version} to "
                f"{move.observed} after the gate; nothing changed"
            )
            result = PromotionResult(
                "lost_race",
                name,
                version,
                move.observed,
                gate.champion_version,
                (*reasons, lost),
                smoke.tag,
            )
    registry.append_audit(
        {
            "event": "promote",
            "name": name,
            "version": version,
            "outcome": result.outcome,
            "from_version": gate.champion_version,
            "champion": result.champion,
            "bento_tag": smoke.tag,
            "reasons": list(result.reasons),
            "deltas": gate.decision.deltas,
        }
    )
    return result


@task(name="smoke-test-bento")
def smoke_test_task(bento: BentoResult, params: Params, project_root: str = ".") -> SmokeResult:
    """Prefect wrapper of `smoke_test_bento`."""
    return smoke_test_bento(bento, params=params, project_root=project_root)


@task(name="promote-version")
def promote_version_task(gate: GateResult, smoke: SmokeResult) -> PromotionResult:
    """Prefect wrapper of `promote_version`."""
    return promote_version(gate, smoke)


def rollback_champion(name: str) -> registry.AliasMove:
    """Move @champion back to the previous champion and audit the move (or the refusal)."""
    move = registry.rollback_champion(name)
    registry.append_audit(
        {
            "event": "rollback",
            "name": name,
            "version": move.to_version,
            "outcome": move.outcome,
            "from_version": move.from_version,
            "champion": move.to_version if move.outcome == "moved" else move.from_version,
            "reasons": [
                f"champion {move.from_version} -> {move.to_version}"
                if move.outcome == "moved"
                else "no earlier champion to roll back to"
            ],
            "deltas": {},
        }
    )
    return move


@task(name="champion-unchanged")
def champion_unchanged_task(name: str, version: str, reused: bool) -> PromotionResult | None:
    """The outcome when the candidate already is the champion (a cached rerun), else None.

    Same ONNX file, same pinned test split, already serving: gating, packaging and smoke-testing
    it again could only repeat the decision already on record.
    """
    champion = registry.alias_version(name, registry.CHAMPION)
    if not reused or champion != version:
        return None
    return PromotionResult(
        outcome="unchanged",
        name=name,
        version=version,
        champion=champion,
        previous_champion=champion,
        reasons=(f"PASS version {version} (same ONNX file, same test split) is already champion",),
        bento_tag=registry.client().get_model_version(name, version).tags.get("bento_tag"),
    )


def hold_rolled_back(name: str, version: str) -> PromotionResult | None:
    """The outcome for the automatic path when `version` is one champion was rolled back from.

    A rollback is a person's verdict on that version; an unchanged rerun would otherwise pass
    the gate again and undo it. It stays held until someone promotes it by hand (`tuneline
    promote N`, which clears the mark); new data or params give a new version anyway.

    Returns:
        PromotionResult "held" (audited; champion untouched), or None when not marked.
    """
    when = registry.rolled_back_on(name, version)
    if when is None:
        return None
    champion = registry.alias_version(name, registry.CHAMPION)
    reason = (
        f"version {version} was rolled back from on {when}; "
        f"`tuneline promote {version}` to promote it again"
    )
    registry.append_audit(
        {
            "event": "promote",
            "name": name,
            "version": version,
            "outcome": "held",
            "from_version": champion,
            "champion": champion,
            "reasons": [reason],
            "deltas": {},
        }
    )
    return PromotionResult(
        outcome="held",
        name=name,
        version=version,
        champion=champion,
        previous_champion=champion,
        reasons=(reason,),
        bento_tag=registry.version_tags(name, champion).get("bento_tag") if champion else None,
    )


@task(name="hold-rolled-back")
def hold_rolled_back_task(name: str, version: str) -> PromotionResult | None:
    """Prefect wrapper of `hold_rolled_back`."""
    return hold_rolled_back(name, version)
