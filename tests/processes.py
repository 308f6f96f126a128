"""Finding processes a test left behind (Linux: reads /proc)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path


def _scan() -> list[tuple[int, str, int, int, str]]:
    """(pid, state, ppid, sid, command line joined by spaces) of every process but this one."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, sid
        found.append((int(entry.name), fields[0], int(fields[1]), int(fields[3]), cmdline))
    return found


def live_processes(
    *,
    session: int | None = None,
    cmdline_contains: str | None = None,
    pids: Iterable[int] = (),
) -> list[int]:
    """Pids of live (non-zombie) processes other than this one that are in `session`, whose
    command line (arguments joined by spaces) contains `cmdline_contains`, or among `pids`."""
    wanted = set(pids)
    return [
        pid
        for pid, state, _, sid, cmdline in _scan()
        if state != "Z"
        and (
            (session is not None and sid == session)
            or (cmdline_contains is not None and cmdline_contains in cmdline)
            or pid in wanted
        )
    ]


def descendants(pid: int) -> dict[int, str]:
    """Live descendants of `pid` and their command lines."""
    procs = [p for p in _scan() if p[1] != "Z"]
    family: dict[int, str] = {}
    parents = {pid}
    while True:
        new = {p[0]: p[4] for p in procs if p[2] in parents and p[0] not in family}
        if not new:
            return family
        family.update(new)
        parents = set(new)


def wait_gone(
    *,
    timeout_s: float,
    session: int | None = None,
    cmdline_contains: str | None = None,
    pids: Iterable[int] = (),
) -> list[int]:
    """Wait up to `timeout_s` for the processes `live_processes` names to end; SIGKILL those
    left (so a failing test cleans up after itself) and return them."""
    pids = list(pids)
    deadline = time.monotonic() + timeout_s
    while (
        left := live_processes(session=session, cmdline_contains=cmdline_contains, pids=pids)
    ) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left
