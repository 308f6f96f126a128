"""A failed `tuneline run --data bad.csv` leaves the project as it was (issue 14, item 5).

A project whose data stages have run once is given a file with a class of 2 rows: ingest
succeeds (DVC rewrites data/raw and dvc.lock), validation refuses it. The console shows the
named error and where the run log is, no traceback (the log keeps it); params.yaml, dvc.lock and
every data output are byte for byte as before, and DVC finds nothing to rerun, so the next plain
run goes on from the old data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, make_workspace
from tests.data.test_own_data import rows, write_csv
from tuneline.config import set_params

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

GOOD = {"sport": 60, "music": 50, "food": 40}


def snapshot(root: Path) -> dict[str, bytes]:
    files = [root / "params.yaml", root / "dvc.lock", *sorted((root / "data").rglob("*"))]
    return {str(p.relative_to(root)): p.read_bytes() for p in files if p.is_file()}


def test_a_failed_run_puts_params_lock_and_data_back(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    set_params(ws, {"data.source": str(write_csv(tmp_path / "good.csv", rows(GOOD)))})
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "repro"], cwd=ws, check=True, capture_output=True, timeout=600)
    before = snapshot(ws)
    assert "data/prepared/labels.json" in before and "data/prepared/stats.json" in before

    bad = write_csv(tmp_path / "bad.csv", rows({**GOOD, "health": 2}))
    env = dict(os.environ, TUNELINE_HOME=str(ws / ".tuneline"))
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--data", str(bad), "--data-only"],
        cwd=ws,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    assert "class_in_every_split" in out and "'health': 2" in out, out
    log = next(line for line in out.splitlines() if "full log: " in line)
    path = Path(log.split("full log: ")[1].split(";")[0])
    assert path.parent == ws / ".tuneline" / "logs" and "Traceback" in path.read_text()
    assert "put back as before the run: " in log and "dvc.lock" in log
    after = snapshot(ws)
    assert sorted(after) == sorted(before)
    assert [k for k in before if after[k] != before[k]] == []

    status = subprocess.run(
        [*dvc, "status"], cwd=ws, capture_output=True, text=True, timeout=300, check=True
    )
    assert "up to date" in status.stdout, status.stdout
