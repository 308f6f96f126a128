"""Builds and runs the torchrun command for fine-tuning.

Training always goes through torchrun, with 1 process or many, so the single-process path is
the distributed path. `python -m tasks.finetune.launcher <torchrun args>` is torchrun
(`torch.distributed.run.main`) started by `tuneline.processes.start_child`: it gets SIGTERM when
the task's process dies (SIGKILL included), and torchrun then stops its workers. The workers,
which torchrun starts in sessions of their own, die with the agent too: each ties itself to the
pid the agent published in $TUNELINE_LAUNCHER_PID (see `tasks.finetune.worker.main`), so a
worker whose agent died while it was still importing torch exits instead of training on, or
waiting for minutes on a rendezvous store that is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuneline.config import TrainParams
from tuneline.console import Progress
from tuneline.errors import ConfigError, TrainingError
from tuneline.processes import machine_cores, start_child, stop_group

WORKER_MODULE = "tasks.finetune.worker"
PROGRESS_FILE = "progress.json"  # in the fine-tune output dir, rewritten after every step
LAUNCHER_PID_ENV = "TUNELINE_LAUNCHER_PID"  # the agent's pid, for its workers to check


def world_size(params: TrainParams) -> int:
    """Processes over all nodes: `nproc` x `nnodes`."""
    return params.nproc * params.nnodes


def per_device_batch(params: TrainParams) -> int:
    """Per-process batch so the global batch is `batch_size` whatever the process count.

    Raises:
        ConfigError: `batch_size` is not divisible by processes x gradient-accumulation steps.
    """
    split = world_size(params) * params.grad_accum
    if params.batch_size % split:
        raise ConfigError(
            [
                f"train.batch_size={params.batch_size} must be divisible by nproc x nnodes x "
                f"grad_accum = {split} so the global batch stays the same"
            ]
        )
    return params.batch_size // split


def thread_count(params: TrainParams) -> int:
    """Torch/OMP threads per process: the explicit knob, else the cores shared out."""
    if params.num_threads:
        return params.num_threads
    return max(1, machine_cores() // params.nproc)


def build_command(spec_path: Path, params: TrainParams, python: str = sys.executable) -> list[str]:
    """The torchrun command line that runs `tasks.finetune.worker <spec_path>`.

    Raises:
        ConfigError: multi-node settings without a rendezvous endpoint, or a bad node rank.
    """
    problems = []
    if params.nnodes > 1 and not params.rdzv_endpoint:
        problems.append("train.rdzv_endpoint (host:port) is required when train.nnodes > 1")
    if params.node_rank >= params.nnodes:
        problems.append(f"train.node_rank={params.node_rank} must be < nnodes={params.nnodes}")
    if problems:
        raise ConfigError(problems)
    per_device_batch(params)  # fail before launching, not inside every worker
    cmd = [python, "-m", "tasks.finetune.launcher", f"--nproc-per-node={params.nproc}"]
    if params.nnodes > 1:
        # static rendezvous: each agent's group rank is its --node-rank, so global rank 0, the
        # one process that writes checkpoints, MLflow and the model, is on node 0. The c10d
        # rendezvous ignores --node-rank and ranks agents by (host name, pid): in the two-node
        # stack test node 1's process came first and node 0's task found no result.
        cmd += [
            f"--nnodes={params.nnodes}",
            f"--node-rank={params.node_rank}",
            "--rdzv-backend=static",
            f"--rdzv-endpoint={params.rdzv_endpoint}",
            "--rdzv-id=tuneline",
        ]
    else:
        cmd += ["--standalone", "--nnodes=1"]
    cmd += ["--max-restarts=0", "-m", WORKER_MODULE, str(spec_path)]
    return cmd


def worker_env(params: TrainParams, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the launcher: thread counts and an importable tuneline."""
    env = dict(os.environ if base is None else base)
    threads = str(thread_count(params))
    env["OMP_NUM_THREADS"] = threads
    env["MKL_NUM_THREADS"] = threads
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def _wait_reporting(proc: Any, progress_file: Path) -> int:
    """Wait for torchrun; meanwhile show the steps rank 0 writes to `progress_file`."""
    progress_file.unlink(missing_ok=True)  # an earlier run's, until rank 0 writes its own
    bar: Progress | None = None
    while True:
        try:
            return int(proc.wait(timeout=1.0))
        except subprocess.TimeoutExpired:
            pass
        try:
            now = json.loads(progress_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not written yet (the workers are still importing torch)
        bar = bar or Progress("fine-tune", int(now.get("total") or 1), "steps")
        shown = {"loss": "loss", "eval_macro_f1": "val macro-F1"}
        note = ", ".join(f"{name} {now[k]:.3f}" for k, name in shown.items() if k in now)
        bar.update(int(now.get("step", 0)), note)


def run_training(spec_path: Path, params: TrainParams, log_path: Path, cwd: Path) -> None:
    """Run torchrun to completion, its output going to `log_path`.

    torchrun runs in a process group of its own, tied to this process: it is stopped when
    this process dies, however it dies.

    Args:
        spec_path: the worker's spec (tasks/finetune/task.py writes it).
        params: `params.train` (process layout, threads).
        log_path: torchrun's and the workers' output, appended to.
        cwd: where torchrun runs (the project).

    Raises:
        TrainingError: torchrun failed; the message holds the tail of the log.
    """
    cmd = build_command(spec_path, params)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        proc = start_child(cmd, env=worker_env(params), log=log, cwd=cwd)
        try:
            # rank 0 writes its step beside the log (callbacks.ProgressCallback)
            rc = _wait_reporting(proc, log_path.parent / PROGRESS_FILE)
        except BaseException:
            # Interrupted (Ctrl-C, cancelled flow): never leave training running.
            stop_group(proc, grace_s=30)
            raise
    if rc != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise TrainingError(f"training failed (torchrun exit code {rc}); log {log_path}:\n{tail}")


def main(argv: list[str] | None = None) -> None:
    """`python -m tasks.finetune.launcher <torchrun args>`: torchrun; tells its workers its pid."""
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())
    from torch.distributed.run import main as torchrun_main

    torchrun_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
