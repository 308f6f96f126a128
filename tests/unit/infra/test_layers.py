"""The layers of DESIGN.md are a contract: lint-imports (run by `make lint`) keeps them.

Each violation is planted in a copy of the packages in tmp_path, so the check is shown to fail
on it (naming the broken contract) without touching the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("tuneline", "tasks", "flows", "serving")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _contract(**match: Any) -> str:
    """The name of the one contract whose fields equal `match`."""
    names = [c["name"] for c in _contracts() if all(c.get(k) == v for k, v in match.items())]
    assert len(names) == 1, f"expected one contract with {match}, got {names}"
    return names[0]


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH puts root's packages ahead of the editable install's finder (a meta-path
    # hook consulted after sys.path), so grimp analyses the copy; --no-cache writes nothing
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _broken(output: str, contract: str) -> bool:
    return re.search(rf"^{re.escape(contract)}\s*BROKEN$", output, re.MULTILINE) is not None


def test_the_repository_keeps_every_contract() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in result.stdout


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


LAZY_CORE_IMPORT = (
    "\n\ndef _lazy() -> None:\n    from tasks.compress.task import compress_model  # violation\n"
)


@pytest.mark.parametrize(
    ("module", "violation", "contract", "reported"),
    [
        (
            "tuneline/errors.py",
            "\nimport flows.training  # violation\n",
            {"type": "layers"},
            "tuneline.errors -> flows.training",
        ),
        # a function-level import counts as much as one at the top: grimp reads both
        (
            "tuneline/errors.py",
            LAZY_CORE_IMPORT,
            {"type": "layers"},
            "tuneline.errors -> tasks.compress.task",
        ),
        (
            "serving/__init__.py",
            "\nfrom tuneline.errors import TunelineError  # violation\n",
            {"type": "forbidden", "source_modules": ["serving"]},
            "serving -> tuneline.errors",
        ),
        (
            "tasks/compress/__init__.py",
            "\nimport tasks.finetune.task  # violation\n",
            {"type": "independence"},
            "tasks.compress -> tasks.finetune.task",
        ),
    ],
    ids=[
        "core-imports-a-flow",
        "core-imports-a-step-lazily",
        "serving-imports-core",
        "step-imports-step",
    ],
)
def test_a_planted_violation_breaks_its_contract(
    copy: Path, module: str, violation: str, contract: dict[str, Any], reported: str
) -> None:
    name = _contract(**contract)
    assert not _broken(_lint_imports(copy).stdout, name), "the copy starts clean"
    with (copy / module).open("a", encoding="utf-8") as f:
        f.write(violation)
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert _broken(result.stdout, name), result.stdout
    assert reported in result.stdout
