"""Children that die with their parent, and stopping them: every child tuneline starts.

`start_child` gives a child its own session (so `stop_group` reaches all of it, and a Ctrl-C
meant for us is not delivered twice) and, on Linux, PR_SET_PDEATHSIG set between fork and exec,
so that it is signalled when we die, SIGKILL included, with no `finally` of ours to run.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. Prefect
runs tasks in worker threads that come and go, so a child forked in one would be killed with its
thread, or, on exit, before Prefect's atexit hooks are done with it (the API server). Every
tied child is therefore forked by one daemon thread of this module (`_Spawner`), which lives as
long as the process. A process started by someone else (torchrun's workers) calls
`tie_to_parent` itself.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

PR_SET_PDEATHSIG = 1
LINUX = sys.platform.startswith("linux")
T = TypeVar("T")
_libc: Any = None


def _prctl() -> Any:
    """libc's prctl, loaded once in the parent (loading it after fork is not fork-safe)."""
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc.prctl


def tie_to_parent(expected_parent: int | None = None, sig: int = signal.SIGKILL) -> None:
    """Have Linux send `sig` to this process when its parent dies (a no-op elsewhere).

    Args:
        expected_parent: the pid the parent had when it started us. A parent that died before
            this call is caught by comparing it with getppid() (we were re-parented by then);
            without it only a death after this call is caught.
        sig: the signal to receive.
    """
    if not LINUX:
        return
    parent = os.getppid() if expected_parent is None else expected_parent
    _prctl()(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)


class _Spawner:
    """One daemon thread that runs every fork of a tied child.

    Daemon, because a non-daemon thread is joined at interpreter exit before atexit hooks run,
    and its children would be signalled then. Blocked in `get()`, it lasts until the process
    ends, so PR_SET_PDEATHSIG means "when this process dies".
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="tuneline-spawner", daemon=True).start()

    def _loop(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except Exception as exc:  # handed back to the caller, which re-raises it
                future.set_exception(exc)

    def call(self, job: Callable[[], T]) -> T:
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return future.result()


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def _spawner_here() -> _Spawner:
    global _spawner
    with _spawner_lock:
        if _spawner is None or _spawner.pid != os.getpid():  # a forked copy has no thread
            _spawner = _Spawner()
        return _spawner


def start_child(
    cmd: list[str],
    *,
    env: dict[str, str],
    log: Any = None,
    cwd: Path | str | None = None,
    tied: bool = True,
    death_signal: int = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start `cmd` in a session of its own; if `tied`, it gets `death_signal` when we die.

    Args:
        cmd: the command line.
        env: its whole environment.
        log: where stdout and stderr go (a file, DEVNULL); None: ours.
        cwd: its working directory.
        tied: False for a server meant to outlive us (`tuneline up`).
        death_signal: what a tied child receives when this process dies.

    Returns:
        The Popen; its pid is also the child's process group and session id.
    """
    out: dict[str, Any] = {} if log is None else {"stdout": log, "stderr": subprocess.STDOUT}
    return _popen(cmd, tied, death_signal, env=env, cwd=cwd, **out)


def run_child(
    cmd: list[str],
    *,
    env: dict[str, str],
    cwd: Path | str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)` for a child tied
    to us (SIGTERM when we die) in a session of its own, its group stopped if we are
    interrupted or time out while it runs.

    Raises:
        subprocess.TimeoutExpired: it ran past `timeout` (and was stopped).
    """
    proc: subprocess.Popen[str] = _popen(
        cmd,
        True,
        signal.SIGTERM,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        stop_group(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _popen(cmd: list[str], tied: bool, death_signal: int, **kwargs: Any) -> Any:
    if not (tied and LINUX):
        return subprocess.Popen(cmd, start_new_session=True, **kwargs)
    prctl = _prctl()
    parent = os.getpid()

    def tie() -> None:  # in the child, between fork and exec
        prctl(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
        if os.getppid() != parent:  # we died before prctl took effect
            os._exit(1)

    def fork() -> subprocess.Popen[Any]:
        return subprocess.Popen(cmd, start_new_session=True, preexec_fn=tie, **kwargs)

    return _spawner_here().call(fork)


def stop_group(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """Stop a child started by `start_child`: its process group and every descendant
    (BentoML's workers, torchrun's, are session leaders of their own, outside the group):
    SIGTERM, then SIGKILL after `grace_s`."""
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace_s)
    _reap(family, grace_s)


def stop_pid_group(pid: int, grace_s: float = 10.0) -> None:
    """`stop_group` for a group leader that is not our child (a `tuneline up` server)."""
    import psutil

    try:
        leader = psutil.Process(pid)
        family = leader.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    try:
        leader.wait(timeout=grace_s)
    except psutil.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    except psutil.NoSuchProcess:
        pass
    _reap(family, grace_s)


def _reap(family: list[Any], grace_s: float) -> None:
    """SIGKILL descendants that outlived their parent's own shutdown."""
    import psutil

    _, alive = psutil.wait_procs(family, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_GRACE_S = 20.0  # how long a foreground server may take to stop after a forwarded signal


def _wait_bounded(proc: subprocess.Popen[Any], received: list[int], grace_s: float) -> int:
    """`proc.wait()`, but once a signal was forwarded (`received`), at most `grace_s` more:
    then SIGKILL to its group and every descendant, which may be session leaders of their own."""
    import psutil

    signalled_at: float | None = None
    while True:
        try:
            return proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        if received and signalled_at is None:
            signalled_at = time.monotonic()
        if signalled_at is not None and time.monotonic() - signalled_at > grace_s:
            try:
                family = psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                family = []
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            for child in family:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            return proc.wait()


def run_foreground(
    cmd: list[str],
    env: dict[str, str],
    cwd: Path | str | None = None,
    stop_grace_s: float = STOP_GRACE_S,
) -> int:
    """Run a server in the foreground until it exits; it never outlives us.

    SIGTERM, SIGINT and SIGHUP to us are passed to its group (a second one: SIGKILL); a server
    still running `stop_grace_s` after the first is killed with all its descendants (BentoML's
    arbiter took over 60 s to stop its workers on a loaded 2-core machine); our SIGKILL reaches
    it through PR_SET_PDEATHSIG; its group is stopped on the way out.

    Returns:
        Its exit status; 128 + N when signal N ended it (as a shell reports it).
    """
    proc = start_child(cmd, env=env, cwd=cwd)
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL if len(received) > 1 else signum)

    previous: dict[int, Any] = {}
    try:
        if threading.current_thread() is threading.main_thread():  # handlers live there only
            previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
        rc = _wait_bounded(proc, received, stop_grace_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_group(proc)
    return 128 - rc if rc < 0 else rc


def machine_cores() -> int:
    """CPUs this process may run on (its affinity where the OS has one: taskset, cgroup cpusets)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
