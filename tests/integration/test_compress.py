"""Compression + ONNX export on the smoke profile: every variant exports, runs in ORT and holds
parity; a corrupted export raises ParityError; a collapsed variant is rejected; MLflow lineage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.synthetic import LABELS, synthetic_rows, train_briefly
from tuneline.config import Params, load_params
from tuneline.errors import ParityError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(ROOT, "smoke")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("home")
        mp.setenv("TUNELINE_HOME", str(home))
        mp.delenv("TUNELINE_MLFLOW_TRACKING_URI", raising=False)
        yield home


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, params: Params, env: Path):
    """data/prepared with learnable synthetic splits, and a briefly trained tiny BERT."""
    import torch

    from tuneline.models import build_tiny_bert

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("proj")
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True)
    splits = {
        "train": synthetic_rows(240, 1, 12),
        "val": synthetic_rows(40, 2, 12),
        "test": synthetic_rows(80, 3, 12),
    }
    for name, df in splits.items():
        df.to_parquet(prepared / f"{name}.parquet", index=False)
    (prepared / "labels.json").write_text(json.dumps({"labels": LABELS}))
    model, tokenizer = build_tiny_bert(splits["train"]["text"].tolist(), LABELS, params.train)
    train = splits["train"]
    train_briefly(model, tokenizer, train["text"].tolist(), train["label"].tolist(), steps=40)
    model_dir = root / "model"
    model.save_pretrained(str(model_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(model_dir))
    (model_dir / "labels.json").write_text(json.dumps({"labels": LABELS}))
    return root, prepared, model_dir


@pytest.fixture(scope="module")
def parent_run(env: Path) -> str:
    import mlflow

    from tuneline.settings import get_settings

    mlflow.set_tracking_uri(get_settings().tracking_uri)
    exp = mlflow.set_experiment("tuneline-test")
    with mlflow.start_run(experiment_id=exp.experiment_id, run_name="finetune") as run:
        mlflow.log_metric("accuracy", 1.0)
    return run.info.run_id


@pytest.fixture(scope="module")
def result(workspace, params: Params, parent_run: str):
    from tasks.compress.task import compress_model

    root, prepared, model_dir = workspace
    return compress_model.fn(
        model_dir, prepared, params, output_dir=root / "variants", parent_run_id=parent_run
    )


EXPECTED = {
    "fp32",
    "int8_dynamic",
    "int8_static",
    "prune_unstructured",
    "prune_structured",
    "distilled",
}

QUANTIZED = {"int8_dynamic", "int8_static"}


def _variant(result, name: str):
    return next(v for v in result.variants if v.name == name)


def test_every_variant_exports_runs_in_ort_and_holds_parity(result, params: Params, workspace):
    import onnx

    from serving.predictor import OnnxTextClassifier

    cp = params.compress
    assert {v.name for v in result.variants} == EXPECTED
    test = pd.read_parquet(workspace[1] / "test.parquet")
    for v in result.variants:
        vdir = Path(v.onnx_dir)
        for f in ("model.onnx", "labels.json", "variant.json", "tokenizer.json"):
            assert (vdir / f).is_file(), f"{v.name}: {f} missing"
        onnx.checker.check_model(str(vdir / "model.onnx"))
        graph = onnx.load(str(vdir / "model.onnx")).graph
        assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
        assert [o.name for o in graph.output] == ["logits"]
        for inp in graph.input:  # batch and sequence axes are symbolic, not baked in
            dims = inp.type.tensor_type.shape.dim
            assert all(d.dim_param and not d.dim_value for d in dims), (v.name, dims)
        clf = OnnxTextClassifier(vdir)
        for n in (1, 3, 33):  # different batch sizes and padded lengths
            logits = clf.logits(test["text"].tolist()[:n], batch_size=32)
            assert logits.shape == (n, 2) and logits.dtype == np.float32
        quant = v.name in QUANTIZED
        assert v.parity["rows"] == len(test)
        assert v.parity["agreement"] >= (
            cp.quant_parity_min_agreement if quant else cp.parity_min_agreement
        )
        assert v.parity["max_abs_logit"] <= (
            cp.quant_parity_max_abs_logit if quant else cp.parity_max_abs_logit
        )
        meta = json.loads((vdir / "variant.json").read_text())
        assert meta["name"] == v.name and meta["method"] == v.method
        assert meta["metrics"]["accuracy"] == pytest.approx(v.metrics["accuracy"])


def test_variants_are_really_compressed(result, params: Params):
    import onnx

    cp = params.compress
    base = json.loads((Path(_variant(result, "fp32").onnx_dir) / "variant.json").read_text())
    unstructured = json.loads(
        (Path(_variant(result, "prune_unstructured").onnx_dir) / "variant.json").read_text()
    )
    assert unstructured["settings"]["achieved_sparsity"] >= cp.sparsity * 0.99
    structured = json.loads(
        (Path(_variant(result, "prune_structured").onnx_dir) / "variant.json").read_text()
    )
    assert structured["architecture"]["intermediate"] < base["architecture"]["intermediate"]
    student = json.loads(
        (Path(_variant(result, "distilled").onnx_dir) / "variant.json").read_text()
    )
    assert student["architecture"]["layers"] == cp.distill_layers
    assert student["architecture"]["layers"] < base["architecture"]["layers"]
    for name in QUANTIZED:
        ops = {
            n.op_type
            for n in onnx.load(str(Path(_variant(result, name).onnx_dir) / "model.onnx")).graph.node
        }
        assert ops & {"DynamicQuantizeLinear", "QuantizeLinear", "MatMulInteger"}, name
        assert (
            _variant(result, name).metrics["size_mb"] < _variant(result, "fp32").metrics["size_mb"]
        )


def _torch_reference(workspace, params: Params):
    from tuneline.models import load_classifier, torch_logits

    _, prepared, model_dir = workspace
    texts = pd.read_parquet(prepared / "test.parquet")["text"].tolist()
    model, tokenizer = load_classifier(model_dir)
    return texts, torch_logits(model, tokenizer, texts, params.train.max_seq_len)


def _copy_with_initializer(src: Path, dst: Path, pick, edit) -> None:
    import onnx
    from onnx import numpy_helper

    shutil.copytree(src, dst)
    model = onnx.load(str(dst / "model.onnx"))
    init = pick(model.graph.initializer)
    arr = numpy_helper.to_array(init).copy()
    init.CopyFrom(numpy_helper.from_array(edit(arr), init.name))
    onnx.save(model, str(dst / "model.onnx"))


def test_corrupted_export_raises_parity_error(result, workspace, params: Params, tmp_path):
    from tasks.compress.export import check_parity, measure_parity

    texts, ref = _torch_reference(workspace, params)
    bad = tmp_path / "corrupted"
    _copy_with_initializer(
        Path(_variant(result, "fp32").onnx_dir),
        bad,
        pick=lambda inits: max(inits, key=lambda i: np.prod(i.dims)),  # the biggest weight
        edit=lambda a: a + np.random.default_rng(0).normal(0, 0.05, a.shape).astype(a.dtype),
    )
    stats = measure_parity(bad, ref, texts, num_threads=1)
    cp = params.compress
    with pytest.raises(ParityError, match=r"'corrupted'.*max \|delta logit\|"):
        check_parity(
            "corrupted",
            stats,
            max_abs_logit=cp.parity_max_abs_logit,
            min_agreement=cp.parity_min_agreement,
        )
    # the untouched export passes the same check
    good = measure_parity(Path(_variant(result, "fp32").onnx_dir), ref, texts, num_threads=1)
    check_parity(
        "fp32", good, max_abs_logit=cp.parity_max_abs_logit, min_agreement=cp.parity_min_agreement
    )


def test_collapsed_variant_is_rejected_by_the_budget(result, workspace, params: Params, tmp_path):
    from tasks.compress.select import select_variant
    from tasks.compress.task import score_variant

    _, prepared, _ = workspace
    collapsed = tmp_path / "collapsed"
    # Force the classifier bias to predict 'ham' for everything: a fast but useless variant.
    _copy_with_initializer(
        Path(_variant(result, "fp32").onnx_dir),
        collapsed,
        pick=lambda inits: next(i for i in inits if "classifier.bias" in i.name),
        edit=lambda a: np.array([1e4, -1e4], dtype=a.dtype),
    )
    test = pd.read_parquet(prepared / "test.parquet")
    scores = score_variant(collapsed, test["text"].tolist(), test["label"].tolist(), LABELS, params)
    assert scores["recall_spam"] == 0.0
    scores["latency_p95_ms"] = 0.0  # even as the fastest it must lose
    table = {v.name: v.metrics for v in result.variants} | {"collapsed": scores}
    chosen, rejected = select_variant(
        table, baseline="fp32", accuracy_budget=0.99, max_recall_drop=0.05
    )
    assert chosen != "collapsed"
    assert "accuracy" in rejected["collapsed"] and "recall_spam" in rejected["collapsed"]


def test_variants_are_mlflow_children_of_the_finetune_run(result, parent_run: str):
    from mlflow.tracking import MlflowClient

    from tuneline.settings import get_settings

    client = MlflowClient(get_settings().tracking_uri)
    exp_id = client.get_run(parent_run).info.experiment_id
    children = client.search_runs([exp_id], f"tags.mlflow.parentRunId = '{parent_run}'")
    assert {r.data.tags["tuneline.variant"] for r in children} == EXPECTED
    for run in children:
        assert run.data.tags["tuneline.parent_run_id"] == parent_run
        assert run.data.tags["tuneline.method"]
        assert {"accuracy", "latency_p95_ms", "throughput_b32", "parity_agreement"} <= set(
            run.data.metrics
        )
        files = {f.path for f in client.list_artifacts(run.info.run_id, "onnx")}
        assert "onnx/model.onnx" in files
    assert {v.run_id for v in result.variants} == {r.info.run_id for r in children}
    parent_files = {f.path for f in client.list_artifacts(parent_run, "compression")}
    assert {"compression/pareto.md", "compression/pareto.png"} <= parent_files
    assert client.get_run(parent_run).data.tags["tuneline.chosen_variant"] == result.chosen.name


def test_chosen_variant_is_complete_and_serves(result, workspace):
    from serving.predictor import OnnxTextClassifier

    chosen = result.chosen
    assert chosen in result.variants
    assert set(result.rejected) == EXPECTED - {chosen.name}
    assert chosen.name in result.pareto_md and "**chosen**" in result.pareto_md
    base = _variant(result, "fp32").metrics
    assert chosen.metrics["accuracy"] >= 0.99 * base["accuracy"]
    test = pd.read_parquet(workspace[1] / "test.parquet")
    preds = OnnxTextClassifier(chosen.onnx_dir).predict(test["text"].tolist())
    assert {p.label for p in preds} <= set(LABELS)
    accuracy = np.mean([p.label_id == y for p, y in zip(preds, test["label"], strict=True)])
    assert accuracy >= 0.9  # the synthetic task is easy; a broken variant falls far below
    assert all(abs(sum(p.probabilities.values()) - 1.0) < 1e-4 for p in preds)


def test_parity_breach_fails_compression(workspace, tmp_path):
    from tasks.compress.task import compress_model

    _, prepared, model_dir = workspace
    strict = load_params(
        ROOT,
        "smoke",
        overrides={
            "compress.static_int8": False,
            "compress.prune_unstructured": False,
            "compress.prune_structured": False,
            "compress.distill": False,
            "compress.quant_parity_max_abs_logit": 1e-9,  # INT8 cannot be this close
        },
    )
    with pytest.raises(ParityError, match=r"int8_dynamic.*max \|delta logit\|"):
        compress_model.fn(
            model_dir, prepared, strict, output_dir=tmp_path / "v", parent_run_id=None
        )


def test_fp16_conversion_keeps_io_types(result, tmp_path):
    import onnx

    from tasks.compress.variants import convert_fp16

    out = tmp_path / "fp16.onnx"
    convert_fp16(Path(_variant(result, "fp32").onnx_dir) / "model.onnx", out)
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
