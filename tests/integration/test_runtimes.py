"""Both runtimes on one exported tiny BERT: OpenVINO (f32, BF16, INT8 QDQ, four threads at once)
answers as ONNX Runtime does, runtime and precision come from variant.json, bad asks raise."""

from __future__ import annotations

import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serving.predictor import VARIANT_FILE, OnnxTextClassifier
from serving.runtimes import openvino_bf16
from tests.synthetic import LABELS, synthetic_rows, train_briefly
from tuneline.config import Params, load_params

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
# Rows of 4..12 words, so every batch is padded: the attention mask is exercised too.
TEXTS: list[str] = synthetic_rows(64, 3, 12)["text"].tolist()


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(ROOT, "smoke")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, params: Params) -> tuple[Path, Any]:
    """A briefly trained tiny BERT exported as an fp32 variant dir (no runtime recorded)."""
    import torch

    from tasks.compress.export import export_fp32
    from tuneline.models import build_tiny_bert

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runtimes")
    train = synthetic_rows(240, 1, 12)
    model, tokenizer = build_tiny_bert(train["text"].tolist(), LABELS, params.train)
    train_briefly(model, tokenizer, train["text"].tolist(), train["label"].tolist(), steps=40)
    target = root / "fp32"
    export_fp32(
        model,
        tokenizer,
        LABELS,
        target,
        opset=params.compress.opset,
        max_seq_len=params.train.max_seq_len,
        work_dir=root / "work",
        meta={"variant": "fp32", "method": "export"},
    )
    return target, tokenizer


@pytest.fixture(scope="module")
def ort_logits(exported: tuple[Path, Any]) -> np.ndarray:
    """The reference: ONNX Runtime on the fp32 graph."""
    logits = OnnxTextClassifier(exported[0], runtime="onnxruntime").logits(TEXTS)
    # a collapsed model would agree with anything; the agreement floors below need both classes
    assert set(np.argmax(logits, axis=1).tolist()) == {0, 1}
    return logits


def _copy_with_variant(src: Path, dest: Path, **changes: Any) -> Path:
    shutil.copytree(src, dest)
    info = json.loads((dest / VARIANT_FILE).read_text(encoding="utf-8"))
    (dest / VARIANT_FILE).write_text(json.dumps({**info, **changes}), encoding="utf-8")
    return dest


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


def test_openvino_f32_matches_onnxruntime(exported: tuple[Path, Any], ort_logits: np.ndarray):
    clf = OnnxTextClassifier(exported[0], runtime="openvino")
    assert (clf.runtime, clf.precision) == ("openvino", "fp32")
    logits = clf.logits(TEXTS)
    assert logits.shape == ort_logits.shape and logits.dtype == np.float32
    assert float(np.max(np.abs(logits - ort_logits))) < 1e-3
    np.testing.assert_array_equal(np.argmax(logits, axis=1), np.argmax(ort_logits, axis=1))
    # batch boundaries change the padding, not the answers
    np.testing.assert_allclose(clf.logits(TEXTS, batch_size=5), logits, atol=1e-4)


def test_runtime_and_precision_come_from_variant_json(
    exported: tuple[Path, Any], ort_logits: np.ndarray, tmp_path: Path
):
    assert OnnxTextClassifier(exported[0]).runtime == "onnxruntime"  # nothing recorded
    copy = _copy_with_variant(exported[0], tmp_path / "ov", runtime="openvino", precision="fp32")
    clf = OnnxTextClassifier(copy)
    assert (clf.runtime, clf.precision) == ("openvino", "fp32")
    assert float(np.max(np.abs(clf.logits(TEXTS) - ort_logits))) < 1e-3
    # an argument overrides what the variant records
    assert OnnxTextClassifier(copy, runtime="onnxruntime").runtime == "onnxruntime"


@pytest.mark.skipif(not openvino_bf16(), reason="this CPU has no AVX-512 BF16 or AMX")
def test_openvino_bf16_agrees_with_fp32(
    exported: tuple[Path, Any], ort_logits: np.ndarray, tmp_path: Path
):
    copy = _copy_with_variant(exported[0], tmp_path / "bf16", runtime="openvino", precision="bf16")
    clf = OnnxTextClassifier(copy)
    assert clf.precision == "bf16"
    logits = clf.logits(TEXTS)
    assert np.all(np.isfinite(logits))
    assert _agreement(logits, ort_logits) >= 0.95
    # BF16 rounds the weights and activations: bit-identical logits would mean the hint was lost
    assert float(np.max(np.abs(logits - ort_logits))) > 1e-6


def test_openvino_from_four_threads_matches_sequential(exported: tuple[Path, Any]):
    clf = OnnxTextClassifier(exported[0], runtime="openvino")
    # chunks of different lengths, so a request shared between threads would mix shapes
    chunks = [
        TEXTS[i : i + n] for i, n in zip(range(0, 64, 8), [1, 3, 8, 5, 8, 2, 7, 8], strict=True)
    ]
    sequential = [clf.logits(chunk) for chunk in chunks]
    start = threading.Barrier(4, timeout=60)

    def worker(offset: int) -> list[np.ndarray]:
        start.wait()  # all four in flight together, not one after another
        order = chunks[offset:] + chunks[:offset]
        return [clf.logits(chunk) for _ in range(3) for chunk in order]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(worker, [0, 2, 4, 6]))
    for offset, got in zip([0, 2, 4, 6], results, strict=True):
        expected = (sequential[offset:] + sequential[:offset]) * 3
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, atol=1e-5)


def test_unknown_runtime_and_openvino_gpu_raise(exported: tuple[Path, Any]):
    with pytest.raises(ValueError, match="tensorrt"):
        OnnxTextClassifier(exported[0], runtime="tensorrt")
    with pytest.raises(ValueError, match="OpenVINO"):
        OnnxTextClassifier(exported[0], runtime="openvino", use_gpu=True)


def test_openvino_runs_int8_static_qdq(
    exported: tuple[Path, Any], ort_logits: np.ndarray, params: Params, tmp_path: Path
):
    import onnx

    from tasks.compress.variants import quantize_static_int8

    src, tokenizer = exported
    int8 = _copy_with_variant(src, tmp_path / "int8", precision="int8_static")
    calib = synthetic_rows(64, 1, 12)["text"].tolist()
    quantize_static_int8(
        src / "model.onnx", int8 / "model.onnx", tokenizer, calib, params.train.max_seq_len
    )
    ops = {node.op_type for node in onnx.load(str(int8 / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # really a QDQ graph, not the fp32 one
    logits = OnnxTextClassifier(int8, runtime="openvino").logits(TEXTS)
    assert np.all(np.isfinite(logits))
    assert _agreement(logits, ort_logits) >= 0.9


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to see a narrowing")
def test_openvino_does_not_pin_inference_to_one_cpu(exported: tuple[Path, Any]):
    # OpenVINO's CPU pinning narrows the inferring thread to the first CPU of the mask while it
    # runs: every Bento worker then computed on that one core and the others idled.
    clf = OnnxTextClassifier(exported[0], runtime="openvino", num_threads=1)
    allowed = os.sched_getaffinity(0)
    done, tid = threading.Event(), {}

    def infer() -> None:
        tid["id"] = threading.get_native_id()
        while not done.is_set():
            clf.logits(TEXTS)

    thread = threading.Thread(target=infer)
    thread.start()
    seen = []
    try:
        for _ in range(200):  # 2 s of samples of the inferring thread's allowed CPUs
            if "id" in tid:
                seen.append(os.sched_getaffinity(tid["id"]))
            threading.Event().wait(0.01)
    finally:
        done.set()
        thread.join(timeout=60)
    assert seen and all(s == allowed for s in seen), {frozenset(s) for s in seen}
