"""Run a check suite through Great Expectations: an ephemeral context, Data Docs on disk.

GX is imported here, lazily (the import costs seconds); tasks/data/checks.py builds the suite
and tasks/data/validate.py reports what this returns.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tasks.data.checks import Check, Outcome, Suite
from tasks.data.derive import ROW

SITE = "tuneline"


def _site(docs_dir: Path) -> dict[str, Any]:
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }


def _rows(check: Check, result: dict[str, Any]) -> tuple[int, ...]:
    ids = [
        int(item[ROW]) for item in result.get("partial_unexpected_index_list") or [] if ROW in item
    ]
    if not ids and check.examples is not None:
        ids = [int(i) for i in np.flatnonzero(check.examples.to_numpy(dtype=bool))[:3]]
    return tuple(dict.fromkeys(ids))[:3]


def run_suite(suite: Suite, *, name: str, docs_dir: Path) -> list[Outcome]:
    """Validate `suite.frame` in a fresh ephemeral GX context and build Data Docs in `docs_dir`.

    Args:
        suite: the checks and the derived frame they assert on.
        name: the dataset name (GX uses it in file names).
        docs_dir: where the Data Docs site is built.

    Returns:
        One outcome per check (non-GX findings first), in suite order.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={SITE: _site(docs_dir)},  # the only site: nothing lands in /tmp
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    batch = (
        context.data_sources.add_pandas("tuneline")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("all_rows")
    )
    gx_suite = context.suites.add(gx.ExpectationSuite(name=name))
    for key, check in enumerate(suite.checks):
        check.expectation.meta = {**(check.expectation.meta or {}), "key": key}
        gx_suite.add_expectation(check.expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=gx_suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[SITE])],
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": 20,
                "unexpected_index_column_names": [ROW],
            },
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": suite.frame})
    by_key: dict[int, Any] = {}
    for validation in run.run_results.values():
        for res in validation.results:
            meta = res.expectation_config.meta if res.expectation_config else None
            by_key[int((meta or {})["key"])] = res
    outcomes = list(suite.problems)
    for key, check in enumerate(suite.checks):
        res = by_key[key]
        if res.success:
            outcomes.append(Outcome(check.name, True, severity=check.severity))
            continue
        info = res.exception_info or {}
        if info.get("raised_exception"):
            finding = f"could not be evaluated ({info.get('exception_message')})"
        else:
            finding = check.describe(dict(res.result or {}))
        rows = _rows(check, dict(res.result or {}))
        outcomes.append(Outcome(check.name, False, finding, rows, check.severity))
    return outcomes
