"""Settings for tests: the real loader on this checkout's params.yaml, plus overrides.

Tests never build a *Params model by hand: its fields have no defaults (params.yaml is their
one source), and a model built in a test would not be what the pipeline runs on.

    params("smoke", **{"train.epochs": 2.0})           # the whole Params
    section("data.clean", lowercase=True)              # one section: CleanParams
    delete_key(tmp_path, "train.epochs")               # a params.yaml copy missing a key
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuneline.config import Params, load_params

REPO = Path(__file__).resolve().parents[1]


def params(profile: str = "default", *, root: Path = REPO, **overrides: Any) -> Params:
    """The settings `load_params` gives for `profile`, with dotted-key overrides.

    Args:
        profile: a profile from configs/, or "default" for params.yaml alone (not the
            `base.profile` the file names, which a `tuneline run --profile` rewrites).
        root: the project holding params.yaml and configs/.
        **overrides: dotted keys, checked like a profile (``**{"data.clean.lowercase": True}``).

    Returns:
        The frozen, validated settings.

    Raises:
        ConfigError: an override names an unknown key, changes a type or is invalid.
    """
    return load_params(root, profile, overrides)


def section(name: str, profile: str = "default", **keys: Any) -> Any:
    """One section of the loaded settings (``"data.clean"`` -> CleanParams), keys overridden.

    Args:
        name: the section's dotted path in params.yaml.
        profile: as for `params`.
        **keys: keys of that section and their values (``copies=2``).

    Returns:
        The section's frozen model.

    Raises:
        ConfigError: a key is unknown in that section, changes a type or is invalid.
    """
    node: Any = params(profile, **{f"{name}.{key}": value for key, value in keys.items()})
    for part in name.split("."):
        node = getattr(node, part)
    return node


def delete_key(root: Path, dotted: str) -> None:
    """Delete a key or a whole section from root/params.yaml (its comments go too).

    Args:
        root: a project copy (never this checkout).
        dotted: the key, e.g. ``"data.validation.min_rows"`` or ``"retrain"``.

    Raises:
        KeyError: the key is not in the file.
    """
    path = root / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        node = node[part]
    del node[last]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
