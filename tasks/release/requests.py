"""Which registry events and states are promotion requests, for the webhook receiver's
handler and `tuneline watch` (flows/gate_service.py): unknown model or version, a project
busy with its own run, a version already champion, a @challenger no gate has decided yet.
"""

from __future__ import annotations

from tuneline import registry
from tuneline.config import Params
from tuneline.decisions import GATE_TAG, REQUEST_TAG, REQUESTED


def project_busy() -> bool:
    """Whether a `tuneline run` / `promote` holds the project lock (it gates what it registers:
    the @challenger its register step sets is not a request)."""
    import fcntl

    from tuneline.runlock import lock_path

    path = lock_path()
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


def unknown(params: Params, name: str, version: str) -> str | None:
    """Why an event names nothing this project gates (None when it does)."""
    from mlflow.exceptions import MlflowException

    if name != params.gate.registered_model:
        return f"unknown model '{name}' (this project gates '{params.gate.registered_model}')"
    try:
        registry.with_retries(lambda: registry.client().get_model_version(name, version))
    except MlflowException:
        return f"'{name}' has no version {version!r}"
    return None


def promotion_wanted(name: str, version: str) -> str | None:
    """Why a promotion request is not acted on (None: start the gate)."""
    if project_busy():
        return "a tuneline run or promote holds the project lock; it gates what it registers"
    if registry.alias_version(name, registry.CHAMPION) == version:
        return f"v{version} already is champion"
    return None


def requests_in_registry(name: str) -> list[str]:
    """What `tuneline watch` acts on: @challenger on a version no gate has decided yet, and
    every version tagged `tuneline.promote = requested` (oldest first)."""
    mlc = registry.client()
    found = registry.with_retries(lambda: mlc.search_model_versions(f"name = '{name}'"))
    wanted = {str(v.version) for v in found if v.tags.get(REQUEST_TAG) == REQUESTED}
    challenger = registry.alias_version(name, registry.CHALLENGER)
    if challenger is not None:
        tags = registry.version_tags(name, challenger)
        if GATE_TAG not in tags and "gate" not in tags:
            wanted.add(challenger)
    return sorted(wanted, key=int)
