"""`tuneline promote N`: gate -> package -> smoke-test -> promote one registered version.

The steps are the release block's (flows/training.py `release_version`). A refused gate or a
failed smoke test raises PromotionRefused (every reason listed); losing the compare-and-set
race is an outcome, returned as a value. Promoting by hand also clears a rolled-back mark.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.training import release_version
from tasks.release.promote import PromotionResult
from tuneline.config import load_params


@flow(name="promotion")
def promotion_flow(
    version: str, profile: str | None = None, project_root: str = "."
) -> PromotionResult:
    """Run the gate for a chosen registered version and promote it if it passes.

    Args:
        version: the registered version.
        profile: params profile (configs/<name>.yaml).
        project_root: the project whose pinned test split is used.

    Returns:
        PromotionResult "promoted", or "lost_race".

    Raises:
        PromotionRefused: the gate or the Bento smoke test refused it.
    """
    params = load_params(project_root, profile)
    name = params.gate.registered_model
    return release_version(name, version, params, Path(project_root))
