"""The one dvc.lock reader (tuneline/dvcfile.py locked_outs) and the lineage built on it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tuneline.dvcfile import locked_outs
from tuneline.lineage import split_md5s

pytestmark = pytest.mark.unit

LOCK = """\
schema: '2.0'
stages:
  validate:
    cmd: python -m tasks.data.stages validate
    outs:
    - path: data/validated
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
  prepare:
    cmd: python -m tasks.data.stages prepare
    deps:
    - path: data/validated
      md5: 0123456789abcdef0123456789abcdef.dir
    outs:
    - path: data/prepared/train.parquet
      hash: md5
      md5: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    - path: data/prepared/test.parquet
      hash: md5
      md5: cccccccccccccccccccccccccccccccc
    - path: data/prepared/labels.json
      hash: md5
      md5: dddddddddddddddddddddddddddddddd
"""


def test_file_outputs_by_path_directories_and_deps_left_out(tmp_path: Path):
    (tmp_path / "dvc.lock").write_text(LOCK)
    assert locked_outs(tmp_path) == {
        "data/prepared/train.parquet": "a" * 32,
        "data/prepared/test.parquet": "c" * 32,
        "data/prepared/labels.json": "d" * 32,
    }


def test_no_lock_file_is_nothing_recorded(tmp_path: Path):
    assert locked_outs(tmp_path) == {}


def test_split_md5s_take_the_lock_and_mark_a_split_it_lacks_unlocked(tmp_path: Path):
    (tmp_path / "dvc.lock").write_text(LOCK)
    prepared = tmp_path / "data" / "prepared"
    prepared.mkdir(parents=True)
    (prepared / "val.parquet").write_bytes(b"val rows")  # on disk, not in dvc.lock
    assert split_md5s(tmp_path) == {
        "train": "a" * 32,
        "test": "c" * 32,
        "val": "unlocked:" + hashlib.md5(b"val rows").hexdigest(),
    }
