"""Fine-tuning building blocks: safety grep, losses, launcher command, checkpoints, precision."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tuneline.config import load_params
from tuneline.errors import ConfigError, TrainingError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
SCANNED = ("tuneline", "tasks", "flows", "serving")


def _source_files() -> list[Path]:
    return [p for d in SCANNED for p in sorted((REPO / d).rglob("*.py"))]


def _call_text(text: str, start: int) -> str:
    """The call starting at `start` up to its balanced closing parenthesis."""
    depth = 0
    for i in range(text.index("(", start), len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start : i + 1]
    return text[start:]


def test_tree_has_no_remote_code_and_no_unsafe_torch_load():
    assert _source_files(), "nothing scanned: wrong repository root?"
    offenders = []
    remote = re.compile(r"trust_remote_code\s*=\s*True")
    for path in _source_files():
        text = path.read_text(encoding="utf-8")
        if remote.search(text):
            offenders.append(f"{path}: trust_remote_code=True")
        for match in re.finditer(r"torch\.load\(", text):
            call = _call_text(text, match.start())
            if not re.search(r"weights_only\s*=\s*True", call):
                offenders.append(f"{path}: {call[:80]!r} without weights_only=True")
    assert not offenders, "\n".join(offenders)


def test_call_text_finds_the_whole_multiline_call():
    text = "x = torch.load(\n  f(a),\n  weights_only=True,\n)\nrest"
    assert _call_text(text, text.index("torch")).endswith("weights_only=True,\n)")


# --- losses -------------------------------------------------------------------------------


def test_class_weights_balance_rare_classes():
    from tasks.finetune.losses import class_weights

    assert torch.allclose(class_weights([0, 1, 0, 1], 2), torch.ones(2))
    w = class_weights([0, 0, 0, 1], 3)
    assert w[1] > w[0] and w[2] == 1.0  # absent class: neutral weight


@pytest.mark.parametrize("kind", ["ce", "weighted_ce", "focal"])
def test_loss_of_a_batch_is_the_mean_of_its_equal_shards(kind):
    """What DDP relies on: 2 processes x 8 rows must train like 1 process x 16 rows."""
    from tasks.finetune.losses import classification_loss

    torch.manual_seed(0)
    logits, targets = torch.randn(16, 3), torch.tensor([0, 0, 0, 1, 2, 0, 1, 0] * 2)
    targets[8:] = torch.tensor([0, 0, 0, 0, 0, 0, 0, 2])  # shards with different class mixes
    weight = torch.tensor([0.5, 2.0, 3.0])
    whole = classification_loss(logits, targets, kind, weight)
    halves = [
        classification_loss(logits[i : i + 8], targets[i : i + 8], kind, weight) for i in (0, 8)
    ]
    assert torch.allclose(whole, (halves[0] + halves[1]) / 2, atol=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy_and_downweights_easy_examples():
    from tasks.finetune.losses import classification_loss

    logits = torch.tensor([[4.0, -4.0], [0.2, 0.1], [-1.0, 1.0]])
    targets = torch.tensor([0, 1, 1])
    ce = classification_loss(logits, targets, "ce")
    assert torch.allclose(classification_loss(logits, targets, "focal", gamma=0.0), ce)
    assert classification_loss(logits, targets, "focal", gamma=2.0) < ce
    weights = torch.tensor([1.0, 3.0])
    weighted = classification_loss(logits, targets, "weighted_ce", weight=weights)
    assert not torch.allclose(weighted, ce)
    with pytest.raises(ValueError):
        classification_loss(logits, targets, "weighted_ce")
    with pytest.raises(ValueError):
        classification_loss(logits, targets, "hinge")


# --- launcher -----------------------------------------------------------------------------


def _train(**over):
    return load_params(REPO, "smoke", {f"train.{k}": v for k, v in over.items()}).train


def test_single_node_command_is_standalone_torchrun_of_the_worker():
    from tasks.finetune.launcher import build_command

    cmd = build_command(Path("/x/spec.json"), _train(nproc=2), python="py")
    assert cmd[:3] == ["py", "-m", "tasks.finetune.launcher"]
    assert "--nproc-per-node=2" in cmd and "--standalone" in cmd
    assert cmd[-3:] == ["-m", "tasks.finetune.worker", "/x/spec.json"]


def test_multi_node_command_uses_the_rendezvous_endpoint():
    from tasks.finetune.launcher import build_command

    tp = _train(nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29400")
    cmd = build_command(Path("s.json"), tp)
    assert "--standalone" not in cmd
    for arg in ("--nnodes=2", "--node-rank=1", "--rdzv-endpoint=10.0.0.1:29400"):
        assert arg in cmd
    with pytest.raises(ConfigError, match="rdzv_endpoint"):
        build_command(Path("s.json"), _train(nnodes=2))
    with pytest.raises(ConfigError, match="node_rank"):
        build_command(Path("s.json"), _train(node_rank=1))


def test_per_device_batch_keeps_the_global_batch():
    from tasks.finetune.launcher import per_device_batch

    assert per_device_batch(_train(batch_size=32, nproc=2, grad_accum=2)) == 8
    assert per_device_batch(_train(batch_size=16, nproc=1)) == 16
    with pytest.raises(ConfigError, match="divisible"):
        per_device_batch(_train(batch_size=30, nproc=4))


def test_worker_env_sets_threads_and_import_path():
    from tasks.finetune.launcher import worker_env

    env = worker_env(_train(num_threads=3), base={})
    assert env["OMP_NUM_THREADS"] == "3"
    assert str(REPO) in env["PYTHONPATH"].split(":")
    env = worker_env(_train(num_threads=0, nproc=2), base={})
    assert int(env["OMP_NUM_THREADS"]) >= 1


def test_threads_follow_the_cpus_this_process_may_use():
    """`taskset -c 0 tuneline run` on a 2-core machine: one thread, not two fighting for a core."""
    import os

    from tasks.finetune.launcher import thread_count

    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert thread_count(_train(num_threads=0, nproc=1)) == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert thread_count(_train(num_threads=0, nproc=1)) == len(allowed)


def test_precision_flags():
    from tasks.finetune.worker import precision_flags

    assert precision_flags("auto", cuda=False, bf16_ok=False) == (False, False)
    assert precision_flags("auto", cuda=True, bf16_ok=True) == (True, False)
    assert precision_flags("auto", cuda=True, bf16_ok=False) == (False, True)
    assert precision_flags("bf16", cuda=False, bf16_ok=False) == (True, False)
    assert precision_flags("fp32", cuda=True, bf16_ok=True) == (False, False)
    with pytest.raises(ConfigError, match="fp16"):
        precision_flags("fp16", cuda=False, bf16_ok=False)


# --- checkpoints --------------------------------------------------------------------------


def _fake_checkpoint(root: Path, step: int, complete: bool) -> Path:
    from tasks.finetune.checkpoints import write_marker

    ckpt = root / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"w" * 64)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if complete:
        write_marker(ckpt, step)
    return ckpt


def test_latest_complete_skips_partial_and_damaged_checkpoints(tmp_path):
    from tasks.finetune.checkpoints import MARKER, is_complete, latest_complete, remove_partial

    c10 = _fake_checkpoint(tmp_path, 10, complete=True)
    c20 = _fake_checkpoint(tmp_path, 20, complete=True)
    c30 = _fake_checkpoint(tmp_path, 30, complete=False)  # killed while writing
    assert latest_complete(tmp_path) == c20
    with open(c20 / "model.safetensors", "r+b") as fh:  # marker present, weights cut short
        fh.truncate(10)
    assert not is_complete(c20)
    assert latest_complete(tmp_path) == c10
    (c10 / MARKER).write_text("{not json")
    assert latest_complete(tmp_path) is None
    assert set(remove_partial(tmp_path)) == {c10, c20, c30}
    assert latest_complete(tmp_path / "missing") is None


def test_marker_callback_marks_on_rank_zero_and_drops_pickled_args(tmp_path):
    from tasks.finetune.checkpoints import CompletionMarkerCallback, is_complete

    ckpt = _fake_checkpoint(tmp_path, 5, complete=False)
    (ckpt / "training_args.bin").write_bytes(b"pickle")
    args = SimpleNamespace(output_dir=str(tmp_path))
    CompletionMarkerCallback().on_save(
        args, SimpleNamespace(global_step=5, is_world_process_zero=False), None
    )
    assert not is_complete(ckpt)
    CompletionMarkerCallback().on_save(
        args, SimpleNamespace(global_step=5, is_world_process_zero=True), None
    )
    assert is_complete(ckpt) and not (ckpt / "training_args.bin").exists()


# --- task inputs --------------------------------------------------------------------------


def test_finetune_refuses_missing_splits(tmp_path):
    from tasks.finetune.task import finetune_classifier

    (tmp_path / "train.parquet").write_bytes(b"")
    with pytest.raises(TrainingError, match=r"val\.parquet.*labels\.json"):
        finetune_classifier.fn(tmp_path, load_params(REPO, "smoke"), output_dir=tmp_path / "out")


def test_fingerprint_ignores_process_layout_but_not_learning_settings(tmp_path):
    import pandas as pd

    from tasks.finetune.task import fingerprint

    for split in ("train", "val"):
        pd.DataFrame({"text": ["a b"], "label": [0]}).to_parquet(tmp_path / f"{split}.parquet")
    base = load_params(REPO, "smoke")
    fp = fingerprint(base, tmp_path, ["a", "b"])
    two = load_params(REPO, "smoke", {"train.nproc": 2, "train.num_threads": 2})
    assert fingerprint(two, tmp_path, ["a", "b"]) == fp
    lr = load_params(REPO, "smoke", {"train.learning_rate": 0.5})
    assert fingerprint(lr, tmp_path, ["a", "b"]) != fp
    assert fingerprint(base, tmp_path, ["b", "a"]) != fp
    json.dumps(fp)  # a plain string, storable in run.json
