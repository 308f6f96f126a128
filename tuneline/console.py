"""What `tuneline run` prints, and the run log that keeps everything else.

The console gets one line when a stage starts and one when it ends (its duration and key
figure), progress while fine-tuning and compression run (a bar redrawn in place on a
terminal, a line every `base.progress_seconds` otherwise), and the summary. Every log record
of every library, each Python warning, and Prefect's task and flow logs (their tracebacks
included) go to the run log, `<state dir>/logs/<run>.log`, which a failed run names.

Until `open_run_log` is called (tests, tasks called on their own) the lines go to the
`tuneline` logger only, and nothing is printed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

LOG = logging.getLogger("tuneline")
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@dataclass
class _Run:
    path: Path
    log: IO[str]  # the run log, which the process's stdout and stderr point at meanwhile
    stream: IO[str]  # the console
    tty: bool
    progress_seconds: float
    saved_fds: tuple[int, int]  # what fds 1 and 2 were, put back at the end
    saved_streams: tuple[IO[str], IO[str]]
    open_bar: bool = False
    levels: dict[str, int] = field(default_factory=dict)
    muted: dict[logging.Handler, int] = field(default_factory=dict)
    handler: logging.Handler | None = None


_RUN: list[_Run] = []  # the open run log, at most one
_SHOWWARNING: list[Any] = []  # warnings.showwarning before it


def _current() -> _Run | None:
    return _RUN[-1] if _RUN else None


def _fileno(stream: IO[str]) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # a test runner's in-memory stream


def open_run_log(logs_dir: Path, progress_seconds: float) -> Path:
    """Start the run log: from now on the process's stdout and stderr (file descriptors 1 and
    2 too, so native libraries and child processes that print) go into it, and the console
    only gets what `say` and `Progress` write.

    Args:
        logs_dir: where run logs live (`<state dir>/logs`).
        progress_seconds: seconds between progress lines when the console is no terminal.

    Returns:
        The log file, `<logs_dir>/run-<UTC time>.log`.
    """
    logs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path, n = logs_dir / f"run-{stamp}.log", 1
    while path.exists():
        n += 1
        path = logs_dir / f"run-{stamp}-{n}.log"
    log = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (closed at the end)
    out, err = sys.stdout, sys.stderr
    out.flush()
    err.flush()
    fd = _fileno(out)
    if fd is not None:
        console: IO[str] = open(os.dup(fd), "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        tty = console.isatty()
    else:  # a test runner's in-memory stream
        console, tty = out, False
    saved = (os.dup(1), os.dup(2))
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    run = _Run(path, log, console, tty, progress_seconds, saved, (out, err))
    for name in ("tuneline", "prefect"):  # our lines; Prefect's task/flow states and prints
        run.levels[name] = logging.getLogger(name).level
        logging.getLogger(name).setLevel(logging.INFO)
    # every record that reaches the root logger, once, in the log; the root's own console
    # handlers (Prefect's) are muted meanwhile (they would write the same to the log again)
    root = logging.getLogger()
    for handler in root.handlers:
        run.muted[handler] = handler.level
        handler.setLevel(logging.CRITICAL + 1)
    run.handler = logging.StreamHandler(log)
    run.handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(run.handler)
    # warnings.warn -> straight into the run log: not through logging's py.warnings logger,
    # which a library's logging config may have disabled or an earlier capture already owns
    _SHOWWARNING.append(warnings.showwarning)

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        log.write(warnings.formatwarning(message, category, filename, lineno, line))
        log.flush()

    warnings.showwarning = show
    _RUN.append(run)
    return path


def close_run_log() -> None:
    """Stop the run log: stdout and stderr are the console again (the end of `tuneline run`)."""
    run = _current()
    if run is None:
        return
    _end_bar(run)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout, sys.stderr = run.saved_streams
    for fd, saved in zip((1, 2), run.saved_fds, strict=True):
        os.dup2(saved, fd)
        os.close(saved)
    if run.stream is not sys.stdout:
        run.stream.close()
    for name, level in run.levels.items():
        logging.getLogger(name).setLevel(level)
    if run.handler is not None:
        logging.getLogger().removeHandler(run.handler)
    for handler, level in run.muted.items():
        handler.setLevel(level)
    if _SHOWWARNING:
        warnings.showwarning = _SHOWWARNING.pop()
    run.log.close()
    _RUN.clear()


def _end_bar(run: _Run) -> None:
    if run.open_bar:
        run.stream.write("\n")
        run.open_bar = False


def say(text: str) -> None:
    """One console line (and the same in the run log).

    Args:
        text: the line.
    """
    run = _current()
    LOG.info(text)  # into the run log (its handlers write to the redirected stderr)
    if run is not None:
        _end_bar(run)
        run.stream.write(text + "\n")
        run.stream.flush()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class StageLine:
    """The stage a `stage()` block reports; set `figure` to the key figure of its end line."""

    name: str
    figure: str = ""
    started: float = field(default_factory=time.perf_counter)


@contextlib.contextmanager
def stage(name: str) -> Iterator[StageLine]:
    """Print `NAME started` now and `NAME done in T: FIGURE` (or `NAME failed after T`) at the end.

    Args:
        name: the stage, as the user reads it (data, fine-tune, compress, release).

    Yields:
        The StageLine whose `figure` the block sets.
    """
    line = StageLine(name)
    say(f"{name:9s} started")
    try:
        yield line
    except BaseException:
        say(f"{name:9s} failed after {_duration(time.perf_counter() - line.started)}")
        raise
    took = _duration(time.perf_counter() - line.started)
    say(f"{name:9s} done in {took}" + (f": {line.figure}" if line.figure else ""))


class Progress:
    """Progress of a long step: a bar on a terminal; otherwise a line every
    `base.progress_seconds`, and (the total known) at most one per tenth of the way, so a long
    fine-tune stays a few lines in a log file."""

    def __init__(self, name: str, total: int, unit: str) -> None:
        """Args:
        name: the stage (the line's prefix).
        total: how many units make it complete (0: not known ahead, only a count is shown).
        unit: what is counted (steps, candidates).
        """
        self.name, self.total, self.unit = name, total, unit
        self.started = time.perf_counter()
        self._last, self._tenths = self.started, 0

    def update(self, done: int, note: str = "") -> None:
        """Report `done` of `total` units (with an optional note, e.g. the loss).

        Args:
            done: units complete.
            note: a short figure shown after the count.
        """
        run = _current()
        now = time.perf_counter()
        share = min(1.0, done / self.total) if self.total > 0 else 0.0
        text = f"{self.name:9s} {done}/{self.total} {self.unit} ({share:.0%})"
        if self.total <= 0:  # not known ahead (the compression search)
            text = f"{self.name:9s} {done} {self.unit}"
        text += f" {note}" if note else ""
        text += f", {_duration(now - self.started)}"
        if run is None:
            return
        if run.tty:
            filled = int(share * 24)
            bar = "#" * filled + "-" * (24 - filled)
            run.stream.write(f"\r[{bar}] {text}\x1b[K")
            run.stream.flush()
            run.open_bar = True
        elif now - self._last >= run.progress_seconds and (
            self.total <= 0 or int(share * 10) > self._tenths  # at most one line per 10 %
        ):
            self._last, self._tenths = now, int(share * 10)
            say(text)
