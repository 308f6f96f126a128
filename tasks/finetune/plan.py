"""Plan where the expensive steps write (content-addressed run folders)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tuneline.caching import plan_run_dirs

plan_runs = task(name="plan-run-dirs", cache_policy=NO_CACHE)(plan_run_dirs)
