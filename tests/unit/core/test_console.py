"""The run console (issue 14, item 4): one start and one end line per stage, progress lines
throttled off a terminal, and everything else a library prints (Python warnings, logging,
native writes to file descriptor 2) in the run log instead of on the console."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import pytest

from tuneline import console

pytestmark = pytest.mark.unit


def test_stage_lines_progress_and_library_noise_in_the_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = console.open_run_log(tmp_path / "logs", progress_seconds=0.2)
    try:
        with console.stage("fine-tune") as line:
            bar = console.Progress("fine-tune", 10, "steps")
            for step in range(1, 11):
                bar.update(step, "loss 0.5")
                time.sleep(0.05)
            warnings.warn("a library's FutureWarning", FutureWarning, stacklevel=1)
            logging.getLogger("some.library").warning("a library's warning")
            os.write(2, b"a native library's stderr line\n")
            print("a stray print")
            line.figure = "test accuracy 0.99"
    finally:
        console.close_run_log()
    out = capfd.readouterr()
    shown = (out.out + out.err).splitlines()
    assert shown[0] == "fine-tune started"
    assert shown[-1].startswith("fine-tune done in ") and shown[-1].endswith("test accuracy 0.99")
    progress = [s for s in shown[1:-1]]
    assert progress and all(" steps (" in s and "loss 0.5" in s for s in progress)
    assert len(progress) < 10  # throttled: not one line per update
    assert not any("warning" in s.lower() or "stray" in s or "native" in s for s in shown)
    text = log.read_text()
    for noise in ("FutureWarning", "a library's warning", "native library", "a stray print"):
        assert noise in text, noise
    assert log.parent == tmp_path / "logs" and log.name.startswith("run-")


def test_a_failing_stage_says_so_and_the_console_comes_back(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    console.open_run_log(tmp_path / "logs", progress_seconds=30)
    try:
        with pytest.raises(RuntimeError), console.stage("compress"):
            raise RuntimeError("boom")
    finally:
        console.close_run_log()
    print("after the run")
    shown = capfd.readouterr().out.splitlines()
    assert shown[0] == "compress  started" and shown[1].startswith("compress  failed after ")
    assert shown[-1] == "after the run"


def test_without_a_run_log_nothing_is_printed(capfd: pytest.CaptureFixture[str]) -> None:
    with console.stage("data") as line:
        console.Progress("data", 2, "rows").update(1)
        line.figure = "2 rows"
    out = capfd.readouterr()
    assert out.out == "" and out.err == ""


def test_a_command_run_in_a_log_names_it_when_it_fails(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli_run import logged

    monkeypatch.setenv("TUNELINE_HOME", str(tmp_path / "home"))
    with pytest.raises(ValueError), logged(30) as log:
        print("inside the flow")
        raise ValueError("boom")
    out = capfd.readouterr()
    assert "inside the flow" not in out.out and "Traceback" not in out.out + out.err
    assert out.err.strip() == f"full log: {log}"
    assert "Traceback" in log.read_text() and "ValueError: boom" in log.read_text()
