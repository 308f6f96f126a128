"""The training flow is the pipeline's table of contents, and every task has one name.

Read from the source with `ast` (importing the flow loads torch, ONNX Runtime and Prefect:
a minute on a small machine), so these stay millisecond tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


def calls_in_order(path: Path, function: str) -> list[str]:
    """Names of the plain-name calls in `function`'s body, in source order."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    calls = [n for n in ast.walk(body) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    return [c.func.id for c in sorted(calls, key=lambda c: (c.lineno, c.col_offset))]


def test_the_training_flow_names_every_step_in_order() -> None:
    steps = [
        "ingest_dataset",
        "validate_dataset",
        "prepare_dataset",
        "push_dataset",
        "verify_dataset",
        "summarize_dataset",
        "plan_run_dirs",
        "finetune_classifier",
        "compress_model",
        "register_variant",
        "skip_unchanged",
        "hold_rolled_back",
        "release_version",
        "describe_release",
    ]
    called = calls_in_order(REPO / "flows" / "training.py", "training_flow")
    assert [c for c in called if c in steps] == steps, called


def test_the_release_tail_is_gate_package_smoke_test_promote() -> None:
    called = calls_in_order(REPO / "flows" / "training.py", "release_version")
    steps = ["gate_version", "package_version", "smoke_test_bento", "promote_version"]
    assert [c for c in called if c.islower() and c != "list"] == steps, called
    # `tuneline promote N` runs that same tail, not a copy of it
    assert "release_version" in calls_in_order(REPO / "flows" / "promotion.py", "promotion_flow")


def _is_task(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Name) and target.id == "task"


def test_every_task_is_a_decorated_function_under_its_own_name() -> None:
    tasks: list[str] = []
    problems: list[str] = []
    for path in sorted((REPO / "tasks").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(REPO)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                for deco in filter(_is_task, node.decorator_list):
                    tasks.append(node.name)
                    if isinstance(deco, ast.Call) and any(k.arg == "name" for k in deco.keywords):
                        problems.append(f"{where}: {node.name} gets a second name")
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                func = node.value.func
                if isinstance(func, ast.Call) and _is_task(func):
                    problems.append(f"{where}: {ast.unparse(node.targets[0])} = task(...)(fn)")
                if isinstance(func, ast.Name) and func.id == "cached":
                    target, wrapped = ast.unparse(node.targets[0]), ast.unparse(node.value.args[0])
                    if target != wrapped:
                        problems.append(f"{where}: {target} caches {wrapped} under another name")
    assert not problems, problems
    assert {"finetune_classifier", "register_variant", "gate_version"} <= set(tasks), tasks
