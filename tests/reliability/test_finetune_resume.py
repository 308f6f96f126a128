"""A fine-tuning run SIGKILLed after its first complete checkpoint resumes where it stopped.

Tolerance: the resumed run's final weights equal an uninterrupted run's within
max |Δw| <= 1e-4 (seen: ~1e-7; both runs are single-threaded on CPU, and the Trainer restores
optimizer, scheduler, RNG and the data position from the checkpoint).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
WEIGHT_ATOL = 1e-4
OVERRIDES = {"train.max_steps": 120, "train.save_steps": 10, "train.eval_steps": 40}


def make_prepared(dest: Path, n_train: int = 320, seed: int = 0) -> Path:
    """Two classes with disjoint vocabularies (plus shared filler words): easy to learn."""
    rng = random.Random(seed)
    vocab = [
        [
            "alpha",
            "apple",
            "amber",
            "arrow",
            "anchor",
            "autumn",
            "atlas",
            "azure",
            "acorn",
            "ample",
        ],
        [
            "bravo",
            "banana",
            "bronze",
            "bridge",
            "bottle",
            "breeze",
            "basalt",
            "bishop",
            "bucket",
            "bloom",
        ],
    ]
    filler = ["the", "a", "of", "and", "to", "in", "is", "it", "for", "on", "with", "as"]

    def text(label: int) -> str:
        words = [rng.choice(vocab[label]) for _ in range(rng.randint(3, 8))]
        words += [rng.choice(filler) for _ in range(rng.randint(1, 5))]
        rng.shuffle(words)
        return " ".join(words)

    dest.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", 48), ("test", 64)):
        labels = [0 if i % 3 else 1 for i in range(n)]
        frame = pd.DataFrame(
            {"text": [text(y) for y in labels], "label": labels, "augmented": False}
        )
        frame["label"] = frame["label"].astype("int64")
        frame.to_parquet(dest / f"{split}.parquet", index=False)
    (dest / "labels.json").write_text(json.dumps({"labels": ["ham", "spam"]}))
    return dest


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and PDEATHSIG")
def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(tmp_path, monkeypatch):
    from tasks.finetune import finetune_model
    from tuneline.checkpoints import MARKER, is_complete, list_checkpoints
    from tuneline.config import load_params

    monkeypatch.setenv("TUNELINE_HOME", str(tmp_path / "home"))
    data = make_prepared(tmp_path / "prepared")
    params = load_params(REPO, "smoke", OVERRIDES)
    killed_dir = tmp_path / "killed"

    # 1. Start the task in its own process group; SIGKILL the whole group at the first marker.
    script = (
        "import sys; from pathlib import Path\n"
        "from tuneline.config import load_params\n"
        "from tasks.finetune import finetune_model\n"
        f"p = load_params({str(REPO)!r}, 'smoke', {OVERRIDES!r})\n"
        f"finetune_model(Path({str(data)!r}), p, output_dir=Path({str(killed_dir)!r}))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "TUNELINE_HOME": str(tmp_path / "home")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ckpt_root = killed_dir / "checkpoints"
    deadline = time.monotonic() + 300
    try:
        while not any((p / MARKER).exists() for _, p in list_checkpoints(ckpt_root)):
            assert proc.poll() is None, "training exited before its first checkpoint"
            assert time.monotonic() < deadline, "no complete checkpoint within 300 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (killed_dir / "model").exists(), "the run finished before it could be killed"

    # The workers live in their own sessions (torchrun's choice); they must die with the agent.
    spec = str(killed_dir / "spec.json")
    for _ in range(100):
        if not _processes_mentioning(spec):
            break
        time.sleep(0.1)
    assert not _processes_mentioning(spec), "a training worker outlived the killed launcher"

    complete = [step for step, p in list_checkpoints(ckpt_root) if is_complete(p)]
    assert complete, "no complete checkpoint survived the kill"
    resume_step = max(complete)

    # 2. A half-written checkpoint newer than every complete one: weights cut short, no marker.
    partial = ckpt_root / "checkpoint-119"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\x00" * 100)
    (partial / "trainer_state.json").write_text('{"global_step": 119')
    run_id_before = json.loads((killed_dir / "run.json").read_text())["run_id"]

    # 3. Rerun: resumes from the newest complete checkpoint, into the same MLflow run.
    resumed = finetune_model(data, params, output_dir=killed_dir)
    progress = json.loads((killed_dir / "train_result.json").read_text())
    assert progress["start_step"] == resume_step > 0
    assert progress["resumed_from"].endswith(f"checkpoint-{resume_step}")
    assert progress["steps_run"] == OVERRIDES["train.max_steps"] - resume_step
    assert progress["global_step"] == OVERRIDES["train.max_steps"]
    assert not partial.exists(), "the half-written checkpoint was not discarded"
    assert resumed.run_id == run_id_before

    # 4. Same final weights as a run that was never interrupted.
    reference = finetune_model(data, params, output_dir=tmp_path / "reference")
    ref_progress = json.loads((tmp_path / "reference" / "train_result.json").read_text())
    assert ref_progress["start_step"] == 0
    a, b = _weights(Path(resumed.model_dir)), _weights(Path(reference.model_dir))
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= WEIGHT_ATOL, f"resumed weights differ by {worst:.2e} > {WEIGHT_ATOL}"
    assert resumed.metrics["accuracy"] == pytest.approx(reference.metrics["accuracy"], abs=0.02)
