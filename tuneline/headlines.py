"""The key figure each stage's end line shows (tuneline.console.stage), from its small result.

It reads the same results the summary screen reads (tuneline/summary.py names them as
protocols: tuneline/ cannot import the tasks that return them).
"""

from __future__ import annotations

import json
from pathlib import Path

from tuneline.lineage import SPLITS
from tuneline.summary import BASELINE, Compressed, PipelineSummary, Released, Tuned

REPORT = Path("data/validated/report.json")  # the validate stage's output (dvc.yaml)


def data_headline(summary: PipelineSummary, root: Path) -> str:
    """Rows per split, which stages DVC ran, and the validation warnings by name.

    Args:
        summary: the data half of the summary.
        root: the project (its validation report is read for the warnings).
    """
    sizes = " / ".join(f"{s} {summary.split_sizes.get(s, 0):,}" for s in SPLITS)
    ran = [name for name, did in summary.stages_ran.items() if did]
    text = f"{sizes} rows; " + (f"ran {', '.join(ran)}" if ran else "unchanged (DVC)")
    try:
        report = json.loads((root / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return text
    found = [str(w).split(":")[0] for w in report.get("warnings") or []]
    if found:
        text += f"; data findings to review: {', '.join(found)} ({REPORT})"
    return text


def finetune_headline(tuned: Tuned) -> str:
    """Test accuracy and macro-F1 of the PyTorch model, and the steps it ran.

    Args:
        tuned: the fine-tune result.
    """
    m = tuned.metrics
    return f"test accuracy {m.get('accuracy', 0):.4f}, macro-F1 {m.get('macro_f1', 0):.4f}"


def compress_headline(compressed: Compressed) -> str:
    """The chosen candidate, its accuracy and its speed against the plain FP32 export.

    Args:
        compressed: the compression result.
    """
    chosen = compressed.chosen
    base = next((v for v in compressed.variants if v.name == BASELINE), chosen)
    rate, base_rate = chosen.metrics.get("throughput"), base.metrics.get("throughput")
    speed = f", {rate / base_rate:.2f}x the rows/s of {BASELINE}" if rate and base_rate else ""
    return (
        f"chose {chosen.name} of {len(compressed.variants) + len(compressed.rejected)} "
        f"candidates, accuracy {chosen.metrics.get('accuracy', 0):.4f}{speed}"
    )


def release_headline(released: Released) -> str:
    """What happened to the candidate: promoted, unchanged, held, lost the race.

    Args:
        released: the release outcome.
    """
    return f"{released.outcome}; champion {released.name} v{released.champion}"
