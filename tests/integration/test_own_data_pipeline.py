"""A user's own 6-class CSV through the real DVC stages (issue 14 acceptance, smoke profile).

Its smallest class is 1.5 % of the rows: validation warns and the stages go on to prepared
splits that hold every class. (The run on to a served model is the end-to-end suite's; this
stops after prepare, where the rare class matters.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_workspace
from tests.data.test_own_data import rows
from tuneline.config import set_params

pytestmark = pytest.mark.integration


def test_a_rare_class_warns_and_the_data_stages_finish(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    counts = {"sport": 120, "music": 100, "food": 80, "travel": 60, "money": 34, "health": 6}
    source = tmp_path / "six.csv"
    pd.DataFrame(rows(counts)).to_csv(source, index=False)
    set_params(ws, {"data.source": str(source)})
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=ws, capture_output=True, text=True, check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert "warning" in out and "min_class_share" in out and "'health' has 6 rows (1.5%)" in out
    report = json.loads((ws / "data/validated/report.json").read_text())
    assert report["success"] is True and report["checks"]["min_class_share"] == "warning"
    assert [w.split(":")[0] for w in report["warnings"]] == ["min_class_share"]
    labels = json.loads((ws / "data/prepared/labels.json").read_text())["labels"]
    assert sorted(labels) == sorted(counts)
    for split in ("train", "val", "test"):
        frame = pd.read_parquet(ws / f"data/prepared/{split}.parquet")
        assert frame["label"].nunique() == 6, split
