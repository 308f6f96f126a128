"""Finding processes a test left behind (Linux: reads /proc)."""

from __future__ import annotations

import os
from pathlib import Path


def live_processes(*, session: int | None = None, cmdline_contains: str | None = None) -> list[int]:
    """Pids of live (non-zombie) processes other than this one that are in `session` or whose
    command line (arguments joined by spaces) contains `cmdline_contains`."""
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
        state, sid = fields[0], int(fields[3])
        in_session = session is not None and sid == session
        mentions = cmdline_contains is not None and cmdline_contains in cmdline
        if (in_session or mentions) and state != "Z":
            found.append(int(entry.name))
    return found
