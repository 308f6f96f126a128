"""A fine-tuning run SIGKILLed after its first complete checkpoint resumes where it stopped.

Tolerance: the resumed run's final weights equal an uninterrupted run's within
max |Δw| <= 1e-4 (seen: ~1e-7; both runs are single-threaded on CPU, and the Trainer restores
optimizer, scheduler, RNG and the data position from the checkpoint).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import live_processes
from tests.synthetic import filler_splits

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
WEIGHT_ATOL = 1e-4
OVERRIDES = {"train.max_steps": 120, "train.save_steps": 10, "train.eval_steps": 40}


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


# Put on the PYTHONPATH of the killed run (the launcher, torchrun and its workers): at the
# checkpoint of step TUNELINE_TEST_KILL_STEP, after the Trainer wrote its files and before the
# completion marker, SIGKILL the task's process group and then this worker: a kill that lands
# inside the checkpoint, deterministically.
SITECUSTOMIZE = """
import os, signal
if os.environ.get("TUNELINE_TEST_KILL_STEP"):
    import tasks.finetune.checkpoints as _ckpt
    _write_marker = _ckpt.write_marker

    def write_marker(ckpt, step):
        if step >= int(os.environ["TUNELINE_TEST_KILL_STEP"]):
            os.killpg(int(os.environ["TUNELINE_TEST_TASK_PGID"]), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
        _write_marker(ckpt, step)

    _ckpt.write_marker = write_marker
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return filler_splits(tmp_path_factory.mktemp("resume") / "prepared", n_test=64)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One TUNELINE_HOME for every run here: the tiny model's tokenizer is trained once per
    train split and cached there, so all runs start from the same vocabulary."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def reference(data: Path, home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same training never interrupted (its model directory)."""
    from tasks.finetune.task import finetune_classifier
    from tuneline.config import load_params

    base = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNELINE_HOME", str(home))
        params = load_params(REPO, "smoke", OVERRIDES)
        result = finetune_classifier.fn(data, params, output_dir=base / "run")
    progress = json.loads((base / "run" / "train_result.json").read_text())
    assert progress["start_step"] == 0
    return Path(result.model_dir)


def start_training(data: Path, out: Path, home: Path, env: dict[str, str]) -> subprocess.Popen:
    """The fine-tuning task in a process group of its own."""
    script = (
        "import os, sys; from pathlib import Path\n"
        # for the kill hook in the workers: the group to kill is this task's
        "os.environ['TUNELINE_TEST_TASK_PGID'] = str(os.getpgid(0))\n"
        "from tuneline.config import load_params\n"
        "from tasks.finetune.task import finetune_classifier\n"
        f"p = load_params({str(REPO)!r}, 'smoke', {OVERRIDES!r})\n"
        f"finetune_classifier.fn(Path({str(data)!r}), p, output_dir=Path({str(out)!r}))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "TUNELINE_HOME": str(home), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def assert_workers_gone(out: Path) -> None:
    # The workers live in their own sessions (torchrun's choice); they must die with the agent.
    spec = str(out / "spec.json")
    for _ in range(100):
        if not live_processes(cmdline_contains=spec):
            break
        time.sleep(0.1)
    assert not live_processes(cmdline_contains=spec), (
        "a training worker outlived the killed launcher"
    )


def kill_after_first_checkpoint(data: Path, out: Path, home: Path, tmp_path: Path) -> None:
    """SIGKILL the task's whole group as soon as one checkpoint is complete (mid-epoch)."""
    from tasks.finetune.checkpoints import MARKER, list_checkpoints

    proc = start_training(data, out, home, {})
    deadline = time.monotonic() + 300
    try:
        while not any((p / MARKER).exists() for _, p in list_checkpoints(out / "checkpoints")):
            assert proc.poll() is None, "training exited before its first checkpoint"
            assert time.monotonic() < deadline, "no complete checkpoint within 300 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def kill_inside_second_checkpoint(data: Path, out: Path, home: Path, tmp_path: Path) -> None:
    """SIGKILL everything while the second checkpoint is written (files there, no marker)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    step = 2 * OVERRIDES["train.save_steps"]
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, (str(hook), os.environ.get("PYTHONPATH")))),
        "TUNELINE_TEST_KILL_STEP": str(step),
    }
    proc = start_training(data, out, home, env)
    try:
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the hook did not fire: rc {proc.returncode}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and PDEATHSIG")
@pytest.mark.parametrize("kill", ["after_first_checkpoint", "inside_second_checkpoint"])
def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(
    kill: str,
    data: Path,
    home: Path,
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.finetune.checkpoints import MARKER, is_complete, list_checkpoints
    from tasks.finetune.task import finetune_classifier
    from tuneline.config import load_params

    monkeypatch.setenv("TUNELINE_HOME", str(home))
    params = load_params(REPO, "smoke", OVERRIDES)
    killed_dir = tmp_path / "killed"
    ckpt_root = killed_dir / "checkpoints"

    # 1. The task is SIGKILLed (its whole process group: launcher, torchrun, workers).
    if kill == "after_first_checkpoint":
        kill_after_first_checkpoint(data, killed_dir, home, tmp_path)
    else:
        kill_inside_second_checkpoint(data, killed_dir, home, tmp_path)
    assert not (killed_dir / "model").exists(), "the run finished before it could be killed"
    assert_workers_gone(killed_dir)

    complete = [step for step, p in list_checkpoints(ckpt_root) if is_complete(p)]
    assert complete, "no complete checkpoint survived the kill"
    resume_step = max(complete)
    if kill == "inside_second_checkpoint":
        # The kill landed inside the checkpoint: its files are there, its marker is not.
        torn = ckpt_root / f"checkpoint-{2 * OVERRIDES['train.save_steps']}"
        assert torn.is_dir() and not (torn / MARKER).exists(), list(ckpt_root.iterdir())
        assert resume_step == OVERRIDES["train.save_steps"]
    else:
        # 2. A half-written checkpoint newer than every complete one: weights cut short.
        torn = ckpt_root / "checkpoint-119"
        torn.mkdir()
        (torn / "model.safetensors").write_bytes(b"\x00" * 100)
        (torn / "trainer_state.json").write_text('{"global_step": 119')
    run_id_before = json.loads((killed_dir / "run.json").read_text())["run_id"]

    # 3. Rerun: resumes from the newest complete checkpoint, into the same MLflow run.
    resumed = finetune_classifier.fn(data, params, output_dir=killed_dir)
    progress = json.loads((killed_dir / "train_result.json").read_text())
    assert progress["start_step"] == resume_step > 0
    assert progress["resumed_from"].endswith(f"checkpoint-{resume_step}")
    assert progress["steps_run"] == OVERRIDES["train.max_steps"] - resume_step
    assert progress["global_step"] == OVERRIDES["train.max_steps"]
    assert not torn.exists() or is_complete(torn), "the torn checkpoint was used or kept"
    assert resumed.run_id == run_id_before

    # 4. Same final weights as a run that was never interrupted.
    a, b = _weights(Path(resumed.model_dir)), _weights(reference)
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= WEIGHT_ATOL, f"resumed weights differ by {worst:.2e} > {WEIGHT_ATOL}"
