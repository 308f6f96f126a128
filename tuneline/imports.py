"""Which project modules a module imports, read from its source with `ast`, never imported.

A step's cache key (tuneline.caching) and the code deps of the DVC stages (dvc.yaml, checked by
tests/unit/data/test_dvc_deps.py) are derived from this closure instead of hand lists, which
drifted: the compress key hashed a module compression never used and missed one it did.
Reading instead of importing means no torch is loaded and no module code runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

# The source checkout holding tuneline/, tasks/, flows/ and serving/ (the project is installed
# editable, `-e .`, by the Makefile and the Dockerfile, so this is the code that actually runs).
CODE_ROOT = Path(__file__).resolve().parents[1]


def _module_file(name: str, root: Path) -> Path | None:
    """The file of project module `name` under `root`; None for the standard library, third
    party, or an attribute picked by `from x import y`."""
    parts = name.split(".")
    # project code lives in regular packages under root; a bare folder (configs/) is not one
    if not (root / parts[0] / "__init__.py").is_file():
        return None
    base = root.joinpath(*parts)
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _statements(nodes: list[Any]) -> Iterator[ast.AST]:
    # imports are statements: descending only through blocks (function, class, if, try, with,
    # match bodies) finds every one, lazy imports included, without walking every expression
    for node in nodes:
        yield node
        for block in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(node, block, []))


def _imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Every module name an import statement anywhere in `tree` may load, function-level ones
    and those under `if TYPE_CHECKING:` (which never run) too: hashing one module too many
    costs a cache miss, one too few a stale result."""
    package = module if is_package else module.rpartition(".")[0]
    for node in _statements(tree.body):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `from . import x` inside `package`
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{node.module}" if node.module else anchor
            else:
                base = node.module or ""
            yield base
            # `from x import y` loads x.y when y is a submodule; when it is an attribute,
            # _module_file finds no file for x.y and it is dropped
            yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def _with_parents(name: str) -> Iterator[str]:
    # importing a.b.c runs a/__init__.py and a/b/__init__.py first
    parts = name.split(".")
    yield from (".".join(parts[:i]) for i in range(1, len(parts) + 1))


def module_closure(modules: Iterable[str], root: Path = CODE_ROOT) -> dict[str, Path]:
    """`modules` and every project module they import, transitively, read from source.

    Args:
        modules: dotted names to start from.
        root: the folder holding the project's top-level packages.

    Returns:
        Module name -> source file of every project module reached (no stdlib, no third party).

    Raises:
        SyntaxError: a reached module does not parse (it could not be imported either).
    """
    found: dict[str, Path] = {}
    todo = [parent for name in modules for parent in _with_parents(name)]
    while todo:
        name = todo.pop()
        if name in found or (path := _module_file(name, root)) is None:
            continue
        found[name] = path
        tree = ast.parse(path.read_bytes(), filename=str(path))
        for imported in _imported_names(tree, name, path.name == "__init__.py"):
            todo.extend(_with_parents(imported))
    return found


def package_closure(package: str, root: Path = CODE_ROOT) -> dict[str, Path]:
    """Every module of a step package (each `.py` under its folder) plus what they import.

    Args:
        package: the step package, e.g. `tasks.compress`.
        root: the folder holding the project's top-level packages.

    Returns:
        Module name -> source file, as `module_closure`.

    Raises:
        FileNotFoundError: `package` is not a package under `root`.
        SyntaxError: a reached module does not parse.
    """
    folder = root.joinpath(*package.split("."))
    if not (folder / "__init__.py").is_file():
        raise FileNotFoundError(f"no package {package} under {root}")
    own = [_module_name(path, root) for path in sorted(folder.rglob("*.py"))]
    return module_closure(own, root)
