"""The bodies of the DVC stages (`tuneline stage NAME`, called by dvc.yaml).

Each stage reads params.yaml (plus the active profile) from the project root, writes only its
declared outputs, and reports a failure as a named error, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneline.config import DataParams, Params, load_params
from tuneline.settings import get_settings

RAW_DIR = Path("data") / "raw"
VALIDATED_DIR = Path("data") / "validated"
PREPARED_DIR = Path("data") / "prepared"


def read_recipe(root: Path) -> dict[str, Any]:
    recipe: dict[str, Any] = json.loads((root / RAW_DIR / "source.json").read_text("utf-8"))
    return recipe


def recipe_params(data: DataParams, recipe: dict[str, Any]) -> DataParams:
    """The `data` settings with column names and allowed labels of the ingested source."""
    labels = tuple(str(x) for x in recipe.get("labels") or data.labels)
    return data.model_copy(
        update={"text_col": recipe["text_col"], "label_col": recipe["label_col"], "labels": labels}
    )


def stage_ingest(root: Path, params: Params) -> None:
    from tasks.data.ingest import ingest_source

    result = ingest_source(params.data, raw_dir=root / RAW_DIR, index_url=get_settings().pypi_url)
    print(f"ingested {result.recipe['origin']} -> {result.path} (sha256 {result.sha256[:12]})")


def stage_validate(root: Path, params: Params) -> None:
    from tasks.data.validate import validate_file
    from tuneline.io import write_json

    recipe = read_recipe(root)
    report_dir = get_settings().root / "reports" / "validation"
    result = validate_file(
        root / RAW_DIR / recipe["file"],
        recipe_params(params.data, recipe),
        report_dir=report_dir,
        header=bool(recipe.get("header", True)),
        names=recipe.get("names"),
    )
    summary = result.to_dict()
    summary["report_dir"] = None  # machine-specific; kept out so the output is reproducible
    summary["source_sha256"] = recipe["sha256"]
    write_json(root / VALIDATED_DIR / "report.json", summary)
    warned = sorted({w.split(":", 1)[0] for w in result.warnings})
    also = f" with {len(warned)} warning(s): {', '.join(warned)}" if warned else ""
    print(f"validation passed{also}: {result.n_rows} rows; report in {report_dir}")


def stage_prepare(root: Path, params: Params) -> None:
    from tasks.data.prepare import prepare_splits
    from tasks.data.tables import read_table
    from tasks.data.thesaurus import load_thesaurus

    recipe = read_recipe(root)
    data = recipe_params(params.data, recipe)
    raw = read_table(
        root / RAW_DIR / recipe["file"],
        data.text_col,
        data.label_col,
        header=bool(recipe.get("header", True)),
        names=recipe.get("names"),
    )
    thesaurus = load_thesaurus(get_settings().pypi_url) if params.data.augment.enabled else {}
    result = prepare_splits(
        raw,
        recipe,
        params.data,
        params.base.seed,
        thesaurus,
        root / PREPARED_DIR,
        get_settings().root / "reports" / "leakage",
    )
    for name, size in result.sizes.items():
        print(f"{name:5s} {size:6d} rows  md5 {result.md5[name]}")


STAGES: dict[str, Callable[[Path, Params], None]] = {
    "ingest": stage_ingest,
    "validate": stage_validate,
    "prepare": stage_prepare,
}


def run_stage(name: str, root: Path) -> None:
    """Run one stage body in `root` with the settings found there."""
    STAGES[name](root, load_params(root))
