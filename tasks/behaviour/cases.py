"""Users' own behavioural cases, from a small YAML file (`behaviour.cases`).

    invariance:            # both texts of a pair must get the same label
      - ["Call me when you get home", "call me when u get home"]
    directional:           # appending `add` to `text` must not lower P(label)
      - {text: "Are we still on for lunch?", add: " WIN a FREE prize", label: spam}

A directional case whose label the model does not have is skipped (counted, not an error):
one file can serve datasets with different label sets. An optional `labels: [ham, spam]`
names the label set the file was written for: on a model whose labels do not include them
(another corpus), every case is skipped, the invariance pairs too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from tuneline.errors import ConfigError


@dataclass(frozen=True)
class Directional:
    """Adding `add` to `text` must not lower P(`label`) by more than the tolerance."""

    text: str
    add: str
    label: str


@dataclass(frozen=True)
class Cases:
    """The invariance pairs and directional expectations of one file."""

    invariance: tuple[tuple[str, str], ...]
    directional: tuple[Directional, ...]
    labels: tuple[str, ...] = ()  # the labels the cases were written for; () = any

    def applies_to(self, labels: list[str] | tuple[str, ...]) -> bool:
        """Whether a model with these labels is one the cases were written for."""
        return set(self.labels) <= set(labels)


NO_CASES = Cases((), ())


def load_cases(path: Path | None) -> Cases:
    """Read and check a cases file; None: no user cases.

    Args:
        path: the YAML file.

    Returns:
        Its cases.

    Raises:
        ConfigError: the file is missing, not YAML, or a case is malformed (every problem
            named at once).
    """
    if path is None:
        return NO_CASES
    if not path.is_file():
        raise ConfigError([f"behaviour.cases: {path} does not exist"])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError([f"behaviour.cases: {path} is not YAML ({exc})"]) from None
    if not isinstance(raw, dict) or set(raw) - {"invariance", "directional", "labels"}:
        raise ConfigError(
            [f"behaviour.cases: {path} may hold only 'invariance', 'directional' and 'labels'"]
        )
    problems: list[str] = []
    labels = raw.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        problems.append(f"labels: expected a list of label names, got {labels!r}")
        labels = []
    pairs: list[tuple[str, str]] = []
    for i, pair in enumerate(raw.get("invariance") or []):
        if isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair):
            pairs.append((pair[0], pair[1]))
        else:
            problems.append(f"invariance[{i}]: expected a pair of texts, got {pair!r}")
    directional: list[Directional] = []
    for i, case in enumerate(raw.get("directional") or []):
        keys = {"text", "add", "label"}
        if (
            isinstance(case, dict)
            and set(case) == keys
            and all(isinstance(case[k], str) for k in keys)
        ):
            directional.append(Directional(case["text"], case["add"], case["label"]))
        else:
            problems.append(f"directional[{i}]: expected text, add and label strings, got {case!r}")
    if problems:
        raise ConfigError([f"behaviour.cases: {path}: {p}" for p in problems])
    return Cases(tuple(pairs), tuple(directional), tuple(labels))
