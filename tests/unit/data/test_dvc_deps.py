"""dvc.yaml's code deps cover every module the stage bodies import (issue 12, item 4).

A stage whose deps miss a module it runs is not rerun when that module changes: `dvc repro`
then keeps data built by old code. The closure is read from the source (tuneline.imports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tuneline.imports import module_closure

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
STAGE_BODIES = "tasks.data.stages"  # every `tuneline stage NAME` runs a function of this module


def _stages() -> dict[str, Any]:
    stages: dict[str, Any] = yaml.safe_load((REPO / "dvc.yaml").read_text("utf-8"))["stages"]
    return stages


def _covered(path: str, deps: list[str]) -> bool:
    # a dep folder covers every file under it
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


def _closure_files(root: Path = REPO) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in module_closure([STAGE_BODIES], root).values()
    )


def _problems(deps: list[str], root: Path = REPO) -> list[str]:
    """What is wrong with one stage's code deps: closure files not covered, listed files that
    are gone or that no stage body imports (each one reruns the stage for nothing)."""
    closure = _closure_files(root)
    missing = [f"missing dep {p}" for p in closure if not _covered(p, deps)]
    code_deps = [d for d in deps if (root / d.split("/")[0] / "__init__.py").is_file()]
    gone = [f"no such dep {d}" for d in code_deps if not (root / d).exists()]
    stale = [
        f"stale dep {d} (not imported by {STAGE_BODIES})"
        for d in code_deps
        if (root / d).is_file() and d not in closure
    ]
    return missing + gone + stale


def test_every_stage_runs_a_body_from_the_stage_module() -> None:
    from tasks.data.stages import STAGES

    cmds = {name: stage["cmd"] for name, stage in _stages().items()}
    assert cmds == {name: f"tuneline stage {name}" for name in STAGES}


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_deps_cover_the_modules_its_body_imports(stage: str) -> None:
    deps = [str(d) for d in _stages()[stage]["deps"]]
    assert "tasks/data" in deps, "the step package is a dep as a whole"
    problems = _problems(deps)
    assert not problems, f"dvc.yaml stage {stage}: " + "; ".join(problems)


def test_a_missing_core_module_or_a_stale_one_is_reported() -> None:
    core = [p for p in _closure_files() if not p.startswith("tasks/data/")]
    assert "tuneline/io.py" in core and "tuneline/config.py" in core
    complete = ["data/raw", "tasks/data", "configs", *core]
    assert _problems(complete) == []
    assert _problems([d for d in complete if d != "tuneline/io.py"]) == [
        "missing dep tuneline/io.py"
    ]
    assert _problems([d for d in complete if d != "tasks/data"]) == [
        f"missing dep {p}" for p in _closure_files() if p.startswith("tasks/data/")
    ]
    # tasks never import flows (the layer contract), so flows/training.py is always stale here
    assert _problems([*complete, "flows/training.py", "tuneline/gone.py"]) == [
        "no such dep tuneline/gone.py",
        f"stale dep flows/training.py (not imported by {STAGE_BODIES})",
    ]
