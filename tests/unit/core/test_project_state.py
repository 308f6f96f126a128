"""User data and project state: a source inside a DVC stage output is refused, state follows
the project, and one run per project holds its lock."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.data.ingest import ingest_source
from tests.params import section
from tuneline.config import load_params
from tuneline.dvcfile import stage_outputs
from tuneline.errors import ConfigError, IngestError
from tuneline.runlock import RunLocked, lock_path, project_lock
from tuneline.settings import get_settings, use_project

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.unit


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "configs", root / "configs")
    return root


def test_stage_outputs_are_read_from_dvc_yaml(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text(
        textwrap.dedent(
            """
            stages:
              a:
                cmd: x
                outs: [out/a, {out/b.json: {cache: false}}]
              b:
                cmd: y
                wdir: sub
                metrics: [{m.json: {cache: false}}]
                plots: [p.csv]
            """
        )
    )
    found = {
        p.relative_to(tmp_path.resolve()).as_posix(): s for p, s in stage_outputs(tmp_path).items()
    }
    assert found == {"out/a": "a", "out/b.json": "a", "sub/m.json": "b", "sub/p.csv": "b"}
    assert stage_outputs(tmp_path / "nowhere") == {}


def test_the_shipped_pipeline_outputs_are_all_found(project: Path) -> None:
    found = {p.relative_to(project.resolve()).as_posix() for p in stage_outputs(project)}
    assert {"data/raw", "data/validated/report.json", "data/prepared/train.parquet"} <= found
    assert "data/prepared/stats.json" in found  # a metric is an output DVC rewrites too


@pytest.mark.parametrize(
    "source",
    ["data/raw/mine.csv", "data/raw", "data/prepared/test.parquet", "{root}/data/raw/x/y.csv"],
)
def test_a_source_inside_a_stage_output_is_refused_naming_where_data_may_live(
    project: Path, source: str
) -> None:
    source = source.format(root=project)
    with pytest.raises(ConfigError) as err:
        load_params(project, overrides={"data.source": source})
    text = str(err.value)
    assert f"data.source '{source}' lies inside" in text
    assert "data/user/" in text and "data/raw" in text and "data/prepared/train.parquet" in text


@pytest.mark.parametrize("source", ["data/user/mine.csv", "sms_spam", "/elsewhere/x.csv"])
def test_a_source_outside_the_outputs_is_accepted(project: Path, source: str) -> None:
    assert load_params(project, overrides={"data.source": source}).data.source == source


def test_ingest_refuses_a_source_inside_its_output_and_keeps_it(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    mine = raw / "mine.csv"
    mine.write_text("text,label\nhello,a\n")
    for source in (str(mine), str(raw / "already-deleted-by-dvc.csv")):
        with pytest.raises(IngestError, match=r"lies inside .*data/user/"):
            data = section("data", source=source)
            ingest_source(data, raw_dir=raw, index_url="http://unused")
    assert mine.read_text() == "text,label\nhello,a\n"
    assert sorted(p.name for p in raw.iterdir()) == ["mine.csv"]


@pytest.fixture
def no_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a user's shell: TUNELINE_HOME unset (restored after the test)."""
    for key in ("TUNELINE_HOME", "_TUNELINE_HOME_FROM_ROOT"):
        monkeypatch.setenv(key, "x")  # so that the value use_project sets is undone too
        monkeypatch.delenv(key)


def test_state_follows_the_root_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_home: None
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = tmp_path / "a", tmp_path / "b"
    assert use_project(first) == first.resolve() / ".tuneline"
    assert os.environ["TUNELINE_HOME"] == str(first.resolve() / ".tuneline")  # subprocesses too
    assert get_settings().tracking_uri == f"sqlite:///{first.resolve() / '.tuneline/mlflow.db'}"
    # a second command in the same process, for another project, moves with it
    assert use_project(second) == second.resolve() / ".tuneline"


def test_an_explicit_tuneline_home_wins_over_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_home: None
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNELINE_HOME", "state")  # relative: made absolute for subprocesses
    assert use_project(tmp_path / "project") == tmp_path.resolve() / "state"
    assert os.environ["TUNELINE_HOME"] == str(tmp_path.resolve() / "state")
    assert use_project(tmp_path / "other") == tmp_path.resolve() / "state"


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    with project_lock("tuneline run") as path:
        assert path == lock_path() and path.parent == get_settings().root
        with pytest.raises(RunLocked) as err, project_lock("tuneline run"):
            pass
    text = str(err.value)
    assert text.startswith("another tuneline run holds the lock")
    assert f"pid {os.getpid()}, started " in text and "wait for it or stop it" in text
    with project_lock("tuneline promote 3"):  # released on exit
        assert json.loads(lock_path().read_text())["command"] == "tuneline promote 3"


HOLDER = textwrap.dedent(
    """
    import sys, time
    from tuneline.runlock import project_lock
    with project_lock("tuneline run"):
        print("held", flush=True)
        time.sleep(600)
    """
)


def test_a_lock_left_by_a_killed_run_does_not_block() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"pid {proc.pid},"), project_lock("tuneline run"):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert json.loads(lock_path().read_text())["pid"] == proc.pid  # the stale file is still there
    with project_lock("tuneline run"):
        assert json.loads(lock_path().read_text())["pid"] == os.getpid()
