"""tuneline.processes: a child dies with its parent process, not with the thread that forked it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.processes import descendants, wait_gone

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG, /proc"),
]

REPO = Path(__file__).resolve().parents[3]

# Starts `sleep` as a tied child (from a thread that then exits, when asked), proves the child
# outlived that thread, prints its pid and SIGKILLs itself: no finally, no atexit runs.
PARENT = textwrap.dedent(
    """
    import os, signal, subprocess, sys, threading, time
    from tuneline.processes import start_child
    started = []
    def start():
        started.append(start_child(["sleep", "300"], env=dict(os.environ), log=subprocess.DEVNULL))
    if sys.argv[1] == "thread":
        worker = threading.Thread(target=start)
        worker.start()
        worker.join()  # the forking thread is gone: with PDEATHSIG set there, so is the child
        time.sleep(0.5)
    else:
        start()
    assert started[0].poll() is None, "the child died with the thread that started it"
    print(started[0].pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def run_parent(script: str, *args: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    return int(proc.stdout.split()[0])


@pytest.mark.parametrize("where", ["main", "thread"])
def test_child_dies_when_its_parent_is_sigkilled(where: str) -> None:
    child = run_parent(PARENT, where)
    assert not wait_gone(session=child, timeout_s=10), f"`sleep` (pid {child}) outlived its parent"


def test_tie_to_parent_catches_a_parent_that_died_before_the_call() -> None:
    # The parent named is not ours: as if it had died while we were still importing.
    code = "from tuneline.processes import tie_to_parent; tie_to_parent(1); print('alive')"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL and "alive" not in proc.stdout


def test_tie_to_parent_dies_with_the_parent() -> None:
    grandchild = textwrap.dedent(
        """
        import time
        from tuneline.processes import tie_to_parent
        tie_to_parent()
        print("tied", flush=True)
        time.sleep(300)
        """
    )
    parent = textwrap.dedent(
        f"""
        import os, signal, subprocess, sys
        proc = subprocess.Popen([sys.executable, "-c", {grandchild!r}], stdout=subprocess.PIPE,
                                start_new_session=True)
        assert proc.stdout.readline().strip() == b"tied"
        print(proc.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    child = run_parent(parent)
    assert not wait_gone(session=child, timeout_s=10)


def test_stop_group_stops_descendants_outside_the_group() -> None:
    from tuneline.processes import start_child, stop_group

    # the grandchild leads a session of its own, as BentoML's and torchrun's workers do
    cmd = [
        sys.executable,
        "-c",
        "import subprocess, time; "
        "subprocess.Popen(['sleep', '301'], start_new_session=True); time.sleep(300)",
    ]
    proc = start_child(cmd, env=dict(os.environ), log=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (family := [p for p, cmd in descendants(proc.pid).items() if "sleep 301" in cmd]):
        assert time.monotonic() < deadline, "the grandchild did not start"
        time.sleep(0.05)
    stop_group(proc, grace_s=5)
    assert proc.poll() is not None
    assert not wait_gone(pids=family, timeout_s=10), "the grandchild outlived stop_group"


def test_run_child_answers_like_subprocess_run() -> None:
    from tuneline.processes import run_child

    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    done = run_child([sys.executable, "-c", code], env=dict(os.environ))
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_run_child_stops_a_child_that_runs_past_its_timeout() -> None:
    from tuneline.processes import run_child

    code = "import subprocess, time; subprocess.Popen(['sleep', '302']); time.sleep(300)"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_child([sys.executable, "-c", code], env=dict(os.environ), timeout=2)
    assert time.monotonic() - started < 30
    assert not wait_gone(cmdline_contains="sleep 302", timeout_s=10)


# A server that ignores SIGTERM (as BentoML's arbiter seems to while its workers take their
# time), with a worker in a session of its own; the runner gets SIGTERM and a 1 s grace.
STUBBORN_RUNNER = textwrap.dedent(
    """
    import os, sys
    from tuneline.processes import run_foreground
    server = (
        "import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen(['sleep', '303'], start_new_session=True); time.sleep(300)"
    )
    sys.exit(run_foreground([sys.executable, "-c", server], env=dict(os.environ), stop_grace_s=1))
    """
)


def test_run_foreground_kills_a_server_that_does_not_stop_within_its_grace() -> None:
    runner = subprocess.Popen([sys.executable, "-c", STUBBORN_RUNNER], cwd=REPO)
    deadline = time.monotonic() + 30
    while not (family := [p for p, cmd in descendants(runner.pid).items() if "sleep 303" in cmd]):
        assert runner.poll() is None and time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.05)
    started = time.monotonic()
    runner.send_signal(signal.SIGTERM)
    rc = runner.wait(timeout=30)
    assert time.monotonic() - started < 20, "the runner waited past its grace"
    assert rc == 128 + signal.SIGKILL  # the server did not stop by itself: it was killed
    assert not wait_gone(pids=family, timeout_s=10), "the worker outlived the runner"
