"""`tuneline run` on a params.yaml missing a key: exit 2 at load, the key named, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, make_workspace
from tests.params import delete_key

pytestmark = pytest.mark.integration


def test_tuneline_run_with_a_missing_key_exits_2_naming_it(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "project")
    delete_key(root, "data.validation.min_rows")
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--root", str(root), "--data-only"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "params.yaml: missing key 'data.validation.min_rows'" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (root / "data" / "raw").exists()  # it stopped at load: no stage ran
