"""The data half through real DVC (and the real Prefect flow): reproducible, cached, gated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import make_workspace
from tuneline.lineage import split_md5s

pytestmark = pytest.mark.integration


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, check=False
    )


def test_dvc_repro_is_bit_identical_across_clean_rebuilds(tmp_path: Path) -> None:
    locks = []
    for name in ("a", "b"):
        ws = make_workspace(tmp_path / name)
        proc = dvc(ws, "repro")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        md5s = split_md5s(ws)
        assert set(md5s) == {"train", "val", "test"}
        assert not any(v.startswith("unlocked:") for v in md5s.values())
        locks.append(md5s)
        train = pd.read_parquet(ws / "data/prepared/train.parquet")
        test = pd.read_parquet(ws / "data/prepared/test.parquet")
        assert train["augmented"].any() and not test["augmented"].any()
        assert not set(train["text"]) & set(test["text"])
    assert locks[0] == locks[1]
    # and nothing reruns the second time
    again = dvc(ws, "repro")
    assert "Running stage" not in again.stdout, again.stdout
    assert dvc(ws, "status").stdout.strip().endswith("up to date.")


def test_bad_user_data_stops_at_validation(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "text,label\n" + "".join(f"row {i},{'eggs' if i % 7 else 'x'}\n" for i in range(60))
    )
    # a single class dominating plus a tiny one: the class-share check, made an error here
    # (by default it only warns), fails
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["data"]["source"] = str(bad)
    params["data"]["validation"]["min_class_share"] = 0.3
    params["data"]["validation"]["severity"]["min_class_share"] = "error"
    (ws / "params.yaml").write_text(yaml.safe_dump(params))
    proc = dvc(ws, "repro")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "min_class_share" in out
    assert "Traceback" not in out
    assert not (ws / "data/prepared/train.parquet").exists()


def test_training_flow_runs_data_stages_and_then_is_cached(
    tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.training import training_flow

    ws = make_workspace(tmp_path / "flow")
    first = training_flow(project_root=str(ws), data_only=True)
    assert first.stages_ran == {"ingest": True, "validate": True, "prepare": True}
    assert set(first.data_md5) == {"train", "val", "test"}
    assert sum(first.split_sizes.values()) > 100
    second = training_flow(project_root=str(ws), data_only=True)
    assert not any(second.stages_ran.values())
    assert second.data_md5 == first.data_md5
    assert "up to date" in second.render()
