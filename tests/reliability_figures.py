"""Where reliability tests leave their figures: `make reliability` sets
$TUNELINE_RELIABILITY_OUT and benchmarks/reliability_report.py reads the JSON files there."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_figures(name: str, data: dict[str, Any]) -> None:
    """Write `data` as $TUNELINE_RELIABILITY_OUT/`name` (nothing when the variable is unset)."""
    out = os.environ.get("TUNELINE_RELIABILITY_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, name).write_text(json.dumps(data, indent=2, default=str))
