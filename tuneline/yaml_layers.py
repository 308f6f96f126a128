"""Layered YAML mappings: read one, check an override against its base, merge, nest keys.

Pure mapping operations under tuneline.config, which layers configs/<profile>.yaml and
dotted-key overrides on params.yaml. They know nothing of the settings' models: a profile is
checked against the keys and types params.yaml actually holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuneline.errors import ConfigError


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file ({} for an empty file).

    Args:
        path: the file to read.

    Returns:
        Its contents.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or its top level is no mapping.
    """
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: file not found"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML ({exc})"]) from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError([f"{path}: top level must be a mapping"])
    return loaded


def _same_type(base: Any, new: Any) -> bool:
    if isinstance(base, bool) or isinstance(new, bool):
        return isinstance(base, bool) and isinstance(new, bool)
    if isinstance(base, float) and isinstance(new, int):
        return True  # an integer literal for a float knob is not a type change
    if base is None:
        return True
    if "auto" in (base, new) and all(isinstance(v, str | int) for v in (base, new)):
        return True  # a knob that may be 'auto' (train.max_seq_len) takes a number too
    return type(base) is type(new)


def check_profile(base: dict[str, Any], profile: dict[str, Any], where: str = "") -> list[str]:
    """List every key in `profile` that is unknown in `base` or changes its type.

    Args:
        base: the mapping overridden (params.yaml).
        profile: the overriding mapping (a profile, or nested overrides).
        where: dotted prefix of both mappings, for the messages.

    Returns:
        One message per offending key, dotted from the top; [] when the profile fits.
    """
    problems: list[str] = []
    for key, value in profile.items():
        dotted = f"{where}{key}"
        if key not in base:
            problems.append(f"unknown key '{dotted}' (profiles may only override existing keys)")
            continue
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                problems.append(f"type change for '{dotted}': mapping -> {type(value).__name__}")
            else:
                problems.extend(check_profile(base[key], value, f"{dotted}."))
        elif not _same_type(base[key], value):
            problems.append(
                f"type change for '{dotted}': {type(base[key]).__name__} -> {type(value).__name__}"
            )
    return problems


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over` layered on top, mappings merged key by key (neither is changed)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested mappings: ``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested
