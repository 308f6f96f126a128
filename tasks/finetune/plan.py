"""Plan where the expensive steps write (content-addressed run folders)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tuneline import caching
from tuneline.caching import RunDirs
from tuneline.config import Params
from tuneline.settings import get_settings


@task(cache_policy=NO_CACHE)
def plan_run_dirs(root: Path, prepared_dir: Path, params: Params) -> RunDirs:
    """The fine-tune and compression folders of this configuration, under the runs dir.

    Args:
        root: the project.
        prepared_dir: the prepared splits (their md5s are part of the folder's name).
        params: all settings.

    Returns:
        RunDirs: the same inputs always give the same folders.
    """
    return caching.plan_run_dirs(root, prepared_dir, params, get_settings().runs_dir)
