"""What the compression search finds: candidates and the search's record of them, and the
inputs it starts from (the prepared splits, what this machine can run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from serving.runtimes import cuda_available, openvino_bf16, runtime_available
from tasks.compress.specs import Settings


@dataclass(frozen=True)
class Candidate:
    """One built and scored candidate directory.

    Attributes:
        name: "<structure>_<precision>_<ort|ov>".
        structure, precision, runtime: its three coordinates.
        method: how its structure was made, "+" the precision.
        dir: its variant directory (removed when it was dropped).
        settings: the structure's and the transform's settings.
        parity: `parity_stats` against its structure's PyTorch model.
        scores: accuracy, per-class recall, speed, size.
        fusions: fused-operator counts of its graph; lost: expected ones it lacks.
        dropped: why it may not be served (parity breach, collapsed class), or None.
    """

    name: str
    structure: str
    precision: str
    runtime: str
    method: str
    dir: Path
    settings: Settings
    parity: dict[str, float]
    scores: dict[str, float]
    fusions: dict[str, int]
    lost: list[str]
    use_gpu: bool = False
    dropped: str | None = None


@dataclass
class Search:
    """Everything the search found.

    Attributes:
        reference: the parent's own PyTorch metrics on the test split (the budget's base).
        candidates: every candidate built and scored, dropped ones included, in build order.
        failed: candidates (or whole structures) that could not be built, with why.
        skipped: candidates not built: unavailable here, or dominated on the parent.
        held: structures whose model held the val accuracy target while being made (a KD
            student that reached it), with their encoder weights: a structure with more
            weights is dominated (slower at every precision, no need to be more accurate).
    """

    reference: dict[str, float]
    candidates: list[Candidate] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> list[Candidate]:
        return [c for c in self.candidates if c.dropped is None]

    def dominated(self, structure: str, model: Any, settings: dict[str, Any]) -> str | None:
        """Why `structure` (its PyTorch model just made) need not be built, else None.

        A structure that held the val target is recorded first; any later one with more encoder
        weights than a held structure that has a passed candidate is dominated by it.
        """
        weights = encoder_weights(model)
        if settings.get("kd_stopped") == "target":
            self.held[structure] = weights
            return None
        passed = {c.structure for c in self.passed}
        for name, fewer in self.held.items():
            if name in passed and fewer < weights:
                return (
                    f"dominated: {name} held the val accuracy target with {fewer / 1e6:.1f}M "
                    f"encoder weights, {structure} has {weights / 1e6:.1f}M"
                )
        return None


def encoder_weights(model: Any) -> int:
    """Parameters outside the embeddings: what every token pays for at inference."""
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)


def load_split(prepared_dir: Path, name: str) -> tuple[list[str], list[int]]:
    """Texts and class ids of one prepared split.

    Args:
        prepared_dir: data/prepared.
        name: train, val or test.

    Returns:
        (texts, labels) in file order.
    """
    df = pd.read_parquet(prepared_dir / f"{name}.parquet")
    return df["text"].astype(str).tolist(), [int(v) for v in df["label"]]


def machine_offers() -> set[str]:
    """What this machine can run: the runtimes that import, "bf16", "cuda"."""
    have = {r for r in ("onnxruntime", "openvino") if runtime_available(r)}
    if "openvino" in have and openvino_bf16():
        have.add("bf16")
    if cuda_available():
        have.add("cuda")
    return have
