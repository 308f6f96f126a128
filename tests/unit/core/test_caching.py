"""Cache keys are derived from the code a step imports (tuneline.imports), not from a hand list.

The keys are computed over a copy of the packages in tmp_path, so editing a module there shows
what a change to it does to the key without touching the checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tuneline import caching
from tuneline.caching import COMPRESS_PACKAGE, FINETUNE_PACKAGE, code_version
from tuneline.config import load_params
from tuneline.imports import module_closure, package_closure

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("tuneline", "tasks", "flows", "serving")


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """A copy of the project's packages: edits here leave the checkout alone."""
    root = tmp_path / "code"
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return root


def _edit(root: Path, rel: str) -> None:
    with (root / rel).open("a", encoding="utf-8") as f:
        f.write("\n# an edit\n")


@pytest.mark.parametrize(
    ("package", "imported", "unrelated"),
    [
        # distill imports tuneline.models inside a function, not at the top of the module
        (COMPRESS_PACKAGE, "tuneline/models.py", "tasks/finetune/worker.py"),
        (COMPRESS_PACKAGE, "tasks/compress/distill.py", "flows/training.py"),
        (FINETUNE_PACKAGE, "tasks/finetune/worker.py", "tasks/compress/build.py"),
        # reached through the launcher (tuneline.processes) and task (tuneline.models)
        (FINETUNE_PACKAGE, "tuneline/processes.py", "tasks/release/gate.py"),
        (FINETUNE_PACKAGE, "tuneline/models.py", "flows/training.py"),
    ],
)
def test_editing_an_imported_module_changes_the_code_version_an_unrelated_one_does_not(
    code: Path, package: str, imported: str, unrelated: str
) -> None:
    before = code_version(package, code)
    _edit(code, unrelated)
    assert code_version(package, code) == before, f"{unrelated} is not imported by {package}"
    _edit(code, imported)
    assert code_version(package, code) != before, f"{package} imports {imported}"


def test_every_module_of_the_step_package_is_hashed_even_one_nothing_imports(code: Path) -> None:
    before = code_version(COMPRESS_PACKAGE, code)
    (code / "tasks" / "compress" / "scratch.py").write_text("X = 1\n", encoding="utf-8")
    assert "tasks.compress.scratch" in package_closure(COMPRESS_PACKAGE, code)
    assert code_version(COMPRESS_PACKAGE, code) != before


def test_the_checkout_closures_reach_the_shared_core_and_no_other_step() -> None:
    compress = package_closure(COMPRESS_PACKAGE)
    finetune = package_closure(FINETUNE_PACKAGE)
    assert {"tasks.compress.distill", "tuneline.models", "tuneline.config"} <= set(compress)
    assert {"tasks.finetune.worker", "tuneline.models", "tuneline.processes"} <= set(finetune)
    for closure, other in ((compress, "tasks.finetune"), (finetune, "tasks.compress")):
        assert not [m for m in closure if m.startswith(other) or m.startswith("flows")]
    assert all(path.is_relative_to(REPO) for path in compress.values())


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


def test_closure_follows_every_kind_of_import_without_running_the_code(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            # a module whose import would fail: the closure must read it, never run it
            "pkg/__init__.py": "raise RuntimeError('imported')\nATTR = 1\n",
            "pkg/a.py": (
                "import json\n"
                "import numpy as np\n"
                "from . import b\n"
                "from .c import thing\n"
                "from pkg import ATTR\n"
                "def lazy():\n"
                "    from pkg.sub import d\n"
                "    import pkg.deep.e as e\n"
            ),
            "pkg/b.py": "",
            "pkg/c.py": "thing = 1\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/d.py": "from ..f import x\n",
            "pkg/f.py": "x = 1\n",
            "pkg/deep/__init__.py": "",
            "pkg/deep/e.py": "",
            "pkg/unused.py": "",
            # neither a folder without __init__.py nor a lone file is a project package
            "json/notes.txt": "",
            "numpy.py": "",
        },
    )
    closure = module_closure(["pkg.a"], tmp_path)
    assert set(closure) == {
        "pkg",
        "pkg.a",
        "pkg.b",
        "pkg.c",
        "pkg.sub",
        "pkg.sub.d",
        "pkg.f",
        "pkg.deep",
        "pkg.deep.e",
    }
    assert closure["pkg.sub"] == tmp_path / "pkg" / "sub" / "__init__.py"


def test_a_folder_that_is_no_package_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tasks\.nothing"):
        code_version("tasks.nothing", tmp_path)


def _inputs(tmp_path: Path, params: Any) -> dict[str, Any]:
    return {
        "project_root": tmp_path,
        "prepared_dir": tmp_path / "prepared",
        "output_dir": tmp_path / "out",
        "model_dir": tmp_path / "model",
        "params": params,
        "parent_run_id": "run",
    }


@pytest.mark.parametrize(
    ("key_fn", "imported", "unrelated"),
    [
        (caching.finetune_key, "tasks/finetune/worker.py", "tasks/compress/build.py"),
        (caching.compress_key, "tuneline/models.py", "tasks/finetune/worker.py"),
    ],
)
def test_the_prefect_keys_hash_the_code_of_their_step(
    code: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    key_fn: Any,
    imported: str,
    unrelated: str,
) -> None:
    monkeypatch.setattr(caching, "CODE_ROOT", code)
    inputs = _inputs(tmp_path, load_params(REPO, "smoke"))
    before = key_fn(None, inputs)
    _edit(code, unrelated)
    assert key_fn(None, inputs) == before
    _edit(code, imported)
    assert key_fn(None, inputs) != before
