"""Corrupted DVC data is caught before training: by re-hashing, not by trusting mtime + size.

`tuneline.lineage.verify_splits` (run by the `verify-splits` task before fine-tuning) reads
every byte of each split, its cache object and optionally its remote object, and names the
file with the dvc.lock md5 and the md5 it found. A `dvc push` killed midway leaves the remote
incomplete but never holding a half-written object; pushing again makes it whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers_serving import make_project
from tuneline.errors import DataValidationError
from tuneline.io import md5_file
from tuneline.lineage import verify_splits

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]


def dvc(root: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dvc") / "project"
    make_project(root)
    return root


@pytest.fixture
def project(pristine: Path, tmp_path: Path) -> Path:
    """A private copy (DVC state DB included) of the committed project."""
    root = tmp_path / "project"
    shutil.copytree(pristine, root, symlinks=True)
    # The copy has new inodes/mtimes: let DVC re-learn them so its state DB trusts the files,
    # as it would in a long-lived checkout.
    assert dvc(root, "status").returncode == 0
    return root


def locked_md5(root: Path, split: str) -> str:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    for out in lock["stages"]["split"]["outs"]:
        if out["path"] == f"data/prepared/{split}.parquet":
            return str(out["md5"])
    raise KeyError(split)


def flip_byte_keep_stat(path: Path) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_clean_project_verifies(project: Path) -> None:
    md5s = verify_splits(project)
    assert md5s == {s: locked_md5(project, s) for s in ("train", "val", "test")}


def test_flipped_byte_with_size_and_mtime_kept_is_caught(project: Path) -> None:
    split = project / "data" / "prepared" / "train.parquet"
    expected = locked_md5(project, "train")
    flip_byte_keep_stat(split)
    actual = md5_file(split)
    assert actual != expected
    with pytest.raises(DataValidationError) as err:
        verify_splits(project)
    message = str(err.value)
    assert str(split) in message and expected in message and actual in message
    # What DVC itself says (not asserted: its state DB may or may not trust the old entry).
    status = dvc(project, "status", "--json")
    print("dvc status after in-place flip:", status.stdout.strip())


def test_truncated_split_is_caught(project: Path) -> None:
    split = project / "data" / "prepared" / "test.parquet"
    expected = locked_md5(project, "test")
    os.chmod(split, 0o644)
    data = split.read_bytes()
    split.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataValidationError) as err:
        verify_splits(project)
    message = str(err.value)
    assert str(split) in message and expected in message and md5_file(split) in message


def test_corrupted_cache_object_is_caught(project: Path) -> None:
    expected = locked_md5(project, "val")
    obj = project / ".dvc" / "cache" / "files" / "md5" / expected[:2] / expected[2:]
    assert obj.is_file()
    flip_byte_keep_stat(obj)
    with pytest.raises(DataValidationError) as err:
        verify_splits(project)
    message = str(err.value)
    assert "cache" in message and str(obj) in message and expected in message
    assert md5_file(obj) in message
    # The workspace copy alone is still fine: only the cache check sees the rot.
    assert verify_splits(project, cache=False)


def remote_objects(remote: Path) -> list[Path]:
    """Objects under their final (content-hash) names; an upload's temp file is `*.tmp`."""
    files = [p for p in (remote / "files" / "md5").rglob("*") if p.is_file()]
    return [p for p in files if not p.name.endswith(".tmp")]


def test_push_killed_midway_then_rerun_makes_remote_whole(project: Path, tmp_path: Path) -> None:
    # Enough tracked files that the push takes a while and can be killed in the middle.
    bulk = project / "data" / "bulk"
    bulk.mkdir()
    for i in range(1500):
        (bulk / f"part-{i:05d}.bin").write_bytes(os.urandom(2048))
    assert dvc(project, "add", "data/bulk").returncode == 0
    remote = tmp_path / "remote"
    remote.mkdir()
    assert dvc(project, "remote", "add", "-d", "local", str(remote)).returncode == 0

    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "push", "-r", "local", "-j", "2"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (remote / "files").exists() and len(remote_objects(remote)) >= 20:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "push finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    pushed = remote_objects(remote)
    assert 20 <= len(pushed) < 1500 + 5

    # Detected: the remote is incomplete ...
    status = dvc(project, "status", "-c", "-r", "local", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout or "{}"), "dvc status -c saw a half-pushed remote as clean"
    # ... but whatever landed is whole: no object holds other bytes than its name says
    # (a partial upload never takes an object's final name; it may leave an orphan `*.tmp`,
    # which DVC never reads as an object).
    for obj in pushed:
        if not obj.name.endswith(".dir"):
            assert md5_file(obj) == obj.parent.name + obj.name, obj

    # Rerun: the remote becomes whole.
    again = dvc(project, "push", "-r", "local", timeout=300)
    assert again.returncode == 0, again.stderr
    status = dvc(project, "status", "-c", "-r", "local", "--json")
    assert status.returncode == 0 and json.loads(status.stdout or "{}") == {}, status.stdout
    verify_splits(project, remote=remote)

    # And restorable from the remote alone: drop the cache and the splits, fetch, checkout.
    shutil.rmtree(project / ".dvc" / "cache")
    for split in ("train", "val", "test"):
        (project / "data" / "prepared" / f"{split}.parquet").unlink()
    assert dvc(project, "fetch", "-r", "local", timeout=300).returncode == 0
    assert dvc(project, "checkout").returncode == 0
    verify_splits(project, remote=remote)
