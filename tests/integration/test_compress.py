"""The compression search on the smoke profile: every candidate exports, is fused, runs in its
runtime and holds parity; smaller structures get only the parent's fastest pairs; a corrupted
export breaches parity; a collapsed candidate is rejected; a failing candidate is dropped, not
fatal; MLflow lineage."""

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


STRUCTURES = ["parent", "distilled", "pruned", "sparse"]


@pytest.fixture(scope="module")
def params() -> Params:
    # every structure built (none skipped as dominated by the student): each one is checked
    overrides = {"compress.structures": STRUCTURES, "compress.skip_dominated": False}
    return load_params(ROOT, "smoke", overrides=overrides)


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
    # behaviour.cases is read from the project, as in a real one
    shutil.copytree(ROOT / "configs" / "behaviour", root / "configs" / "behaviour")
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


@pytest.fixture(scope="module")
def selection(result, workspace) -> dict:
    return json.loads((workspace[0] / "variants" / "selection.json").read_text())


def _variant(result, name: str):
    return next(v for v in result.variants if v.name == name)


def _info(result, name: str) -> dict:
    return json.loads((Path(_variant(result, name).onnx_dir) / "variant.json").read_text())


def _parent_pairs(params: Params) -> set[str]:
    from tasks.compress.candidates import machine_offers
    from tasks.compress.specs import enabled_pairs

    pairs, _ = enabled_pairs(params.compress, machine_offers())
    return {f"parent_{p.key}" for p in pairs}


def test_the_parent_gets_every_pair_this_machine_runs(result, params: Params, workspace):
    import onnx

    from serving.predictor import OnnxTextClassifier

    cp = params.compress
    names = {v.name for v in result.variants}
    parents = {n for n in names if n.startswith("parent_")}
    assert parents == _parent_pairs(params)
    assert {"parent_fp32_ort", "parent_fp32_ov", "parent_int8_dynamic_ort"} <= parents
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
        meta = _info(result, v.name)
        clf = OnnxTextClassifier(vdir)
        assert (
            (clf.runtime, clf.precision)
            == (meta["runtime"], meta["precision"])
            == (
                v.runtime,
                meta["precision"],
            )
        )
        for n in (1, 3, 33):  # different batch sizes and padded lengths
            logits = clf.logits(test["text"].tolist()[:n], batch_size=32)
            assert logits.shape == (n, 2) and logits.dtype == np.float32
        reduced = meta["precision"] != "fp32"
        assert v.parity["rows"] == len(test)
        assert v.parity["agreement"] >= (
            cp.quant_parity_min_agreement if reduced else cp.parity_min_agreement
        )
        assert v.parity["max_abs_logit"] <= (
            cp.quant_parity_max_abs_logit if reduced else cp.parity_max_abs_logit
        )
        assert meta["name"] == v.name and meta["method"] == v.method
        assert meta["parity"]["passed"] is True
        assert meta["metrics"]["accuracy"] == pytest.approx(v.metrics["accuracy"])


def test_smaller_structures_get_only_the_parents_fastest_pairs(result, params: Params):
    keep = params.compress.search_keep
    names = {v.name for v in result.variants}
    for structure in STRUCTURES[1:]:
        built = {n for n in names if n.startswith(f"{structure}_")}
        assert len(built) == min(keep, len(_parent_pairs(params))), (structure, built)
        for parent_name in _parent_pairs(params):
            name = parent_name.replace("parent_", f"{structure}_", 1)
            if name not in built:
                assert result.rejected[name].startswith("dominated: as parent_"), name


def test_every_graph_keeps_its_fusions(result):
    for v in result.variants:
        meta = _info(result, v.name)
        layers = meta["architecture"]["layers"]
        assert meta["fusions"]["Attention"] == layers, v.name
        assert meta["fusions"]["SkipLayerNormalization"] == 2 * layers, v.name
        assert meta["lost_fusions"] == [], v.name
    assert "lost " not in result.pareto_md


def test_attention_is_fused_on_the_tiny_bert(workspace, params: Params, tmp_path):
    """Fails when the exporter or the rewriter stops fusing attention into one operator."""
    from tasks.compress.export import export_fp32, fusion_counts
    from tuneline.models import load_classifier

    _, _, model_dir = workspace
    model, tokenizer = load_classifier(model_dir)
    fusions = export_fp32(
        model,
        tokenizer,
        LABELS,
        tmp_path / "fp32",
        opset=params.compress.opset,
        max_seq_len=params.train.max_seq_len,
        work_dir=tmp_path / "work",
    )
    layers = model.config.num_hidden_layers
    assert fusions == fusion_counts(tmp_path / "fp32" / "model.onnx")
    assert fusions["Attention"] == layers and fusions["BiasGelu"] == layers
    assert fusions["SkipLayerNormalization"] == 2 * layers


def test_candidates_are_really_compressed(result, params: Params):
    import onnx

    cp = params.compress
    base = _info(result, "parent_fp32_ort")
    names = {v.name for v in result.variants}

    def first(structure: str) -> dict:
        return _info(result, min(n for n in names if n.startswith(f"{structure}_")))

    assert first("sparse")["settings"]["achieved_sparsity"] >= cp.sparsity * 0.99
    assert first("pruned")["architecture"]["intermediate"] < base["architecture"]["intermediate"]
    student = first("distilled")
    layers = student["architecture"]["layers"]
    assert layers == student["settings"]["distill_layers"] <= cp.distill_layers
    assert cp.distill_min_layers <= layers < base["architecture"]["layers"]
    assert student["settings"]["kd_stopped"] in {"target", "max_steps"}
    assert 0 < student["settings"]["kd_steps"] <= cp.distill_max_steps
    for name in {"parent_int8_dynamic_ort", "parent_int8_static_ort"} & names:
        graph = onnx.load(str(Path(_variant(result, name).onnx_dir) / "model.onnx")).graph
        ops = {n.op_type for n in graph.node}
        assert ops & {"DynamicQuantizeLinear", "QuantizeLinear", "MatMulInteger"}, name
        assert _variant(result, name).metrics["size_mb"] < base["metrics"]["size_mb"]


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
        Path(_variant(result, "parent_fp32_ort").onnx_dir),
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
    good = measure_parity(
        Path(_variant(result, "parent_fp32_ort").onnx_dir), ref, texts, num_threads=1
    )
    check_parity(
        "fp32", good, max_abs_logit=cp.parity_max_abs_logit, min_agreement=cp.parity_min_agreement
    )


def test_collapsed_candidate_is_rejected_by_the_budget(
    result, selection, workspace, params: Params, tmp_path
):
    from tasks.compress.score import score_variant
    from tasks.compress.select import select_candidate

    _, prepared, _ = workspace
    collapsed = tmp_path / "collapsed"
    # Force the classifier bias to predict 'ham' for everything: a fast but useless candidate.
    _copy_with_initializer(
        Path(_variant(result, "parent_fp32_ort").onnx_dir),
        collapsed,
        pick=lambda inits: next(i for i in inits if "classifier.bias" in i.name),
        edit=lambda a: np.array([1e4, -1e4], dtype=a.dtype),
    )
    test = pd.read_parquet(prepared / "test.parquet")
    scores, _ = score_variant(
        collapsed, (test["text"].tolist(), test["label"].tolist()), LABELS, params
    )
    assert scores["recall_spam"] == 0.0
    scores["throughput"] = 1e12  # even as the fastest it must lose
    table = {v.name: v.metrics for v in result.variants} | {"collapsed": scores}
    chosen, rejected = select_candidate(table, selection["reference"], params.compress)
    assert chosen != "collapsed"
    assert "accuracy" in rejected["collapsed"] and "recall_spam" in rejected["collapsed"]


def test_candidates_are_mlflow_children_of_the_finetune_run(result, parent_run: str):
    from mlflow.tracking import MlflowClient

    from tuneline.settings import get_settings

    client = MlflowClient(get_settings().tracking_uri)
    exp_id = client.get_run(parent_run).info.experiment_id
    children = client.search_runs([exp_id], f"tags.mlflow.parentRunId = '{parent_run}'")
    passed = {v.name for v in result.variants}
    assert passed <= {r.data.tags["tuneline.variant"] for r in children}
    for run in children:
        assert run.data.tags["tuneline.parent_run_id"] == parent_run
        assert run.data.tags["tuneline.method"]
        assert {"accuracy", "latency_p95_ms", "throughput", "parity_agreement"} <= set(
            run.data.metrics
        )
        assert {"structure", "precision", "runtime", "fusions"} <= set(run.data.params)
        if run.data.tags["tuneline.variant"] in passed:
            files = {f.path for f in client.list_artifacts(run.info.run_id, "onnx")}
            assert "onnx/model.onnx" in files
        else:
            assert run.data.tags["tuneline.dropped"] and run.info.status == "FAILED"
    assert {v.run_id for v in result.variants} <= {r.info.run_id for r in children}
    parent_files = {f.path for f in client.list_artifacts(parent_run, "compression")}
    assert {"compression/pareto.md", "compression/pareto.png"} <= parent_files
    assert client.get_run(parent_run).data.tags["tuneline.chosen_variant"] == result.chosen.name


def test_chosen_candidate_is_complete_and_serves(result, selection, workspace):
    from serving.predictor import OnnxTextClassifier

    chosen = result.chosen
    assert chosen in result.variants
    assert {v.name for v in result.variants} - {chosen.name} <= set(result.rejected)
    assert chosen.name not in result.rejected
    assert chosen.name in result.pareto_md and "**chosen**" in result.pareto_md
    assert "| PyTorch parent |" in result.pareto_md
    assert chosen.metrics["accuracy"] >= 0.99 * selection["reference"]["accuracy"]
    test = pd.read_parquet(workspace[1] / "test.parquet")
    preds = OnnxTextClassifier(chosen.onnx_dir).predict(test["text"].tolist())
    assert {p.label for p in preds} <= set(LABELS)
    accuracy = np.mean([p.label_id == y for p, y in zip(preds, test["label"], strict=True)])
    assert accuracy >= 0.9  # the synthetic task is easy; a broken candidate falls far below
    assert all(abs(sum(p.probabilities.values()) - 1.0) < 1e-4 for p in preds)


def _compress_parent_only(workspace, tmp_path: Path, overrides: dict):
    from tasks.compress.task import compress_model

    _, prepared, model_dir = workspace
    params = load_params(ROOT, "smoke", overrides={"compress.structures": ["parent"], **overrides})
    return compress_model.fn(
        model_dir, prepared, params, output_dir=tmp_path / "v", parent_run_id=None
    )


def test_a_candidate_failing_parity_is_dropped_not_fatal(workspace, tmp_path):
    # no reduced precision is this close to its source
    result = _compress_parent_only(
        workspace, tmp_path, {"compress.quant_parity_max_abs_logit": 1e-9}
    )
    assert {v.name for v in result.variants} == {"parent_fp32_ort", "parent_fp32_ov"}
    assert result.chosen.name in {"parent_fp32_ort", "parent_fp32_ov"}
    reason = result.rejected["parent_int8_dynamic_ort"]
    assert reason.startswith("parity:") and "max |delta logit|" in reason
    assert "parent_int8_dynamic_ort" in result.pareto_md
    assert not (tmp_path / "v" / "parent_int8_dynamic_ort").exists()  # nothing half-kept


def test_the_run_fails_only_when_no_candidate_passes(workspace, tmp_path):
    impossible = {
        "compress.precisions": ["fp32", "int8_dynamic"],
        "compress.parity_max_abs_logit": 1e-12,  # no export is this close to its source
        "compress.quant_parity_max_abs_logit": 1e-12,
    }
    with pytest.raises(ParityError) as caught:
        _compress_parent_only(workspace, tmp_path, impossible)
    message = str(caught.value)
    for name in ("parent_fp32_ort", "parent_fp32_ov", "parent_int8_dynamic_ort"):
        assert name in message


def test_fp16_conversion_keeps_io_types(result, tmp_path):
    import onnx

    from tasks.compress.variants import convert_fp16

    out = tmp_path / "fp16.onnx"
    convert_fp16(Path(_variant(result, "parent_fp32_ort").onnx_dir) / "model.onnx", out)
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
