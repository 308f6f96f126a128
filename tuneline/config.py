"""The one typed loader for params.yaml and its profiles (the schema: tuneline/schema.py).

params.yaml holds every knob, and only there: no field has a default in code, so a key
missing from the file fails at load, named, instead of running on a value nobody reads. A
profile (configs/<name>.yaml) may only override keys that already exist there, with the same
type; every violation is reported at once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tuneline.errors import ConfigError
from tuneline.schema import (
    AugmentParams,
    BaseParams,
    BehaviourParams,
    CleanParams,
    CompressParams,
    DataParams,
    GateParams,
    Params,
    RetrainParams,
    ServeParams,
    SeverityParams,
    TrainParams,
    TuneParams,
    ValidationParams,
)
from tuneline.source_location import source_location_problem
from tuneline.yaml_layers import check_profile, merge, nest, read_yaml

PARAMS_FILE = "params.yaml"
PROFILES_DIR = "configs"
# pydantic's error types for a key absent from params.yaml and a section that is no mapping
_SHAPE_ERRORS = {"missing": "missing key '{}'", "model_type": "'{}' must be a mapping"}
__all__ = [
    "PARAMS_FILE",
    "PROFILES_DIR",
    "AugmentParams",
    "BaseParams",
    "BehaviourParams",
    "CleanParams",
    "CompressParams",
    "DataParams",
    "GateParams",
    "Params",
    "RetrainParams",
    "ServeParams",
    "SeverityParams",
    "TrainParams",
    "TuneParams",
    "ValidationParams",
    "load_params",
    "set_params",
    "shape_problems",
]
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # a file name in configs/, never a path


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(map(str, loc))


def shape_problems(raw: dict[str, Any]) -> list[str]:
    """Every key absent from params.yaml and every section there that is no mapping.

    Checked before a profile is layered on: params.yaml holds every key, even one a profile
    overrides. A missing section is named once, not key by key.

    Args:
        raw: params.yaml as read.

    Returns:
        ``params.yaml: missing key 'train.epochs'``-style messages; [] when nothing is missing.
    """
    try:
        Params.model_validate(raw)
    except ValidationError as exc:
        return [
            f"{PARAMS_FILE}: {_SHAPE_ERRORS[e['type']].format(_dotted(e['loc']))}"
            for e in exc.errors()
            if e["type"] in _SHAPE_ERRORS
        ]
    return []


def load_params(
    root: Path | str = ".",
    profile: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Params:
    """Read params.yaml, layer the profile and overrides on top, and validate everything.

    Args:
        root: project directory holding params.yaml and configs/.
        profile: profile name; None uses `base.profile` from params.yaml.
        overrides: dotted keys (``{"data.source": "x.csv"}``), checked like a profile.

    Returns:
        The frozen, validated settings.

    Raises:
        ConfigError: listing every key missing from params.yaml; else every unknown key, type
            change and invalid value.
    """
    root = Path(root)
    raw = read_yaml(root / PARAMS_FILE)
    missing = shape_problems(raw)
    if missing:
        raise ConfigError(missing)
    name = profile or str(raw["base"]["profile"])
    if name != "default" and not _PROFILE_NAME.fullmatch(name):
        available = sorted(p.stem for p in (root / PROFILES_DIR).glob("*.yaml"))
        raise ConfigError(
            [
                f"profile '{name}' is not a profile name: a profile is the name of a file in "
                f"{PROFILES_DIR}/ (available: default, {', '.join(available)})"
            ]
        )
    problems: list[str] = []
    merged = raw
    if name != "default":
        prof_path = root / PROFILES_DIR / f"{name}.yaml"
        if not prof_path.exists():
            available = sorted(p.stem for p in (root / PROFILES_DIR).glob("*.yaml"))
            raise ConfigError([f"profile '{name}' not found (available: default, {available})"])
        prof = read_yaml(prof_path)
        problems += [f"{prof_path.name}: {p}" for p in check_profile(raw, prof)]
        merged = merge(merged, prof)
    if overrides:
        over = nest(overrides)
        problems += [f"override: {p}" for p in check_profile(raw, over)]
        merged = merge(merged, over)
    merged = merge(merged, {"base": {"profile": name}})
    data = merged["data"]  # a profile may have replaced the section: reported above
    source = data.get("source") if isinstance(data, dict) else None
    if isinstance(source, str):
        problems += [p for p in (source_location_problem(source, root),) if p]
    if problems:
        raise ConfigError(problems)
    try:
        return Params.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError([f"'{_dotted(e['loc'])}': {e['msg']}" for e in exc.errors()]) from exc


def set_params(root: Path | str, updates: dict[str, Any]) -> bool:
    """Write dotted-key updates into params.yaml, keeping its comments (like `dvc exp run -S`).

    The file is replaced atomically and only when a value actually changes, so DVC sees
    the same params and reruns nothing.

    Args:
        root: project directory holding params.yaml.
        updates: dotted keys and their new values; each key must exist, with the same type.

    Returns:
        True if the file changed.

    Raises:
        ConfigError: listing every unknown key and type change (nothing is written then).
    """
    from ruamel.yaml import YAML

    from tuneline.io import atomic_path  # here: tuneline.io imports pandas, which is slow

    path = Path(root) / PARAMS_FILE
    ryaml = YAML()
    ryaml.preserve_quotes = True
    # a null stays written as `null` (ruamel's round trip would leave the value empty)
    ryaml.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    doc = ryaml.load(path.read_text(encoding="utf-8"))
    base = read_yaml(path)
    problems = check_profile(base, nest(updates))
    if problems:
        raise ConfigError(problems)
    changed = False
    for key, value in updates.items():
        node = doc
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        if node[parts[-1]] != value:
            node[parts[-1]] = value
            changed = True
    if changed:
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
            ryaml.dump(doc, fh)
    return changed
