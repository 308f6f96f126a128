"""MLflow registry helpers: I/O retries, alias compare-and-set, champion history.

Aliases only, never stages. `champion` moves only through `move_champion`, a compare-and-set
held under an exclusive file lock (fcntl.flock on <TUNELINE_HOME>/locks/<model>.lock), so the
re-read and the set are atomic across processes on one machine. Against a shared remote
registry written from several machines the lock does not reach; the re-read still narrows the
window to one round trip. Decisions are audited by tuneline.audit.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from tuneline.settings import get_settings

T = TypeVar("T")
CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
# On a version that champion was rolled back from: the automatic path holds it until a
# promotion by hand (move_champion clears it); new data or params make a new version anyway.
ROLLED_BACK_TAG = "tuneline.rolled_back"
_TRANSIENT = re.compile(r"database is locked|temporarily unavailable|timed out|connection", re.I)


@dataclass(frozen=True)
class AliasMove:
    """Outcome of a compare-and-set on `champion`."""

    outcome: Literal["moved", "lost_race", "nothing_to_roll_back"]
    name: str
    from_version: str | None
    to_version: str | None
    observed: str | None  # what champion pointed at when the lock was held


def client() -> Any:
    """An MlflowClient on the configured store (the URI is read now, never at import)."""
    import mlflow
    from mlflow import MlflowClient

    uri = get_settings().tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def with_retries(fn: Callable[[], T], attempts: int = 4, delay_s: float = 0.5) -> T:
    """Call `fn`, retrying only transient I/O failures (network, locked sqlite) with backoff.

    Args:
        fn: the registry call; attempts: calls at most; delay_s: first wait (then doubled).

    Returns:
        What `fn` returned; a failure that is not transient, or the last one, is raised.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except (OSError, MlflowException) as exc:
            transient = isinstance(exc, ConnectionError | TimeoutError) or bool(
                _TRANSIENT.search(str(exc))
            )
            if not transient or attempt == attempts:
                raise
            time.sleep(delay_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def experiment_id(name: str) -> str:
    """Id of the named experiment, created if missing (a concurrent creator is tolerated).

    On a local store (SQLite) every tuneline experiment keeps its artifacts under the settings'
    artifact root; without an explicit location MLflow would put them in ./mlruns of whatever
    directory we run in. A tracking server (http) decides itself: its proxied
    `--artifacts-destination` (the stack's S3 bucket), never a path of this client's disk.

    Args:
        name: the experiment.

    Returns:
        Its id.
    """
    from mlflow.exceptions import MlflowException

    mlc = client()
    settings = get_settings()
    served = settings.tracking_uri.startswith(("http://", "https://"))
    location = None if served else settings.artifact_root.as_uri()
    for _ in range(2):
        experiment = with_retries(lambda: mlc.get_experiment_by_name(name))
        if experiment is not None:
            return str(experiment.experiment_id)
        try:
            return str(
                with_retries(lambda: mlc.create_experiment(name, artifact_location=location))
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    raise AssertionError(f"experiment {name} neither found nor created")


def alias_version(name: str, alias: str) -> str | None:
    """The version an alias points at.

    Args:
        name: registered model; alias: e.g. CHAMPION.

    Returns:
        The version, or None when the alias (or model) does not exist.
    """
    from mlflow.exceptions import MlflowException

    mlc = client()
    try:
        mv = with_retries(lambda: mlc.get_model_version_by_alias(name, alias))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return str(mv.version)


def version_tags(name: str, version: str) -> dict[str, str]:
    """Every tag of one registered version (lineage, gate, bento_tag, ...).

    Args:
        name: registered model; version: the version.

    Returns:
        tag -> value.
    """
    mlc = client()
    return dict(with_retries(lambda: mlc.get_model_version(name, version)).tags)


def set_version_tag(name: str, version: str, key: str, value: str) -> None:
    """Set one tag on a registered version (retried on transient failures).

    Args:
        name: registered model; version: the version; key, value: the tag.
    """
    mlc = client()
    with_retries(lambda: mlc.set_model_version_tag(name, version, key, value))


@contextlib.contextmanager
def registry_lock(name: str) -> Iterator[None]:
    """Exclusive cross-process lock for alias changes of one registered model.

    Args:
        name: registered model.
    """
    lock_dir = get_settings().root / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    with open(lock_dir / f"{safe}.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def champion_history(name: str) -> list[str]:
    """Versions that were champion, oldest first (the top is the current one).

    Args:
        name: registered model.
    """
    mlc = client()
    model = with_retries(lambda: mlc.get_registered_model(name))
    return list(json.loads(model.tags.get(HISTORY_TAG, "[]")))


def _set_history(name: str, history: list[str]) -> None:
    mlc = client()
    with_retries(lambda: mlc.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history)))


def move_champion(name: str, to_version: str, expected: str | None) -> AliasMove:
    """Point `champion` at `to_version` only if it still points at `expected` (compare-and-set).

    Args:
        name: registered model.
        to_version: the new champion.
        expected: the champion version read before the gate ran (None = there was none).

    Returns:
        AliasMove with outcome "moved", or "lost_race" when champion moved meanwhile
        (nothing is changed then).
    """
    mlc = client()
    with registry_lock(name):
        observed = alias_version(name, CHAMPION)
        if observed != expected:
            return AliasMove("lost_race", name, expected, to_version, observed)
        with_retries(lambda: mlc.set_registered_model_alias(name, CHAMPION, to_version))
        clear_rolled_back(name, to_version)  # champion again: a later rollback marks it anew
        history = champion_history(name)
        if observed is not None and (not history or history[-1] != observed):
            # Champion set outside tuneline, or a crash between an alias set and its history
            # write: keep it reachable, once (a rerun promoting it again must not add it twice,
            # or a rollback would "move" the champion onto itself).
            history.append(observed)
            if to_version == observed:
                _set_history(name, history)
                return AliasMove("moved", name, observed, to_version, observed)
        _set_history(name, [*history, to_version])
    return AliasMove("moved", name, observed, to_version, observed)


def rollback_champion(name: str) -> AliasMove:
    """Move `champion` back to the version that was champion before the current one, and mark
    the version it leaves (ROLLED_BACK_TAG) so that no automatic run promotes it again.

    Args:
        name: registered model.

    Returns:
        AliasMove "moved", or "nothing_to_roll_back" when there is no earlier champion.
    """
    mlc = client()
    with registry_lock(name):
        current = alias_version(name, CHAMPION)
        history = champion_history(name)
        if history and history[-1] == current:
            history.pop()
        if current is None or not history:
            return AliasMove("nothing_to_roll_back", name, current, None, current)
        target = history[-1]
        # marked first: a crash after it leaves a held version, never a re-promotable one
        when = datetime.now(UTC).isoformat(timespec="seconds")
        with_retries(lambda: mlc.set_model_version_tag(name, current, ROLLED_BACK_TAG, when))
        with_retries(lambda: mlc.set_registered_model_alias(name, CHAMPION, target))
        clear_rolled_back(name, target)
        _set_history(name, history)
    return AliasMove("moved", name, current, target, current)


def rolled_back_on(name: str, version: str) -> str | None:
    """When champion was rolled back from `version`.

    Args:
        name: registered model; version: the version.

    Returns:
        The ISO time, or None if it never was or a promotion by hand cleared the mark since.
    """
    return version_tags(name, version).get(ROLLED_BACK_TAG)


def clear_rolled_back(name: str, version: str) -> None:
    """Drop the rolled-back mark of `version` (a no-op when it has none).

    Args:
        name: registered model; version: the version.
    """
    if rolled_back_on(name, version) is not None:
        mlc = client()
        with_retries(lambda: mlc.delete_model_version_tag(name, version, ROLLED_BACK_TAG))
