"""Hostile model files placed where the pipeline reads models: none is executed, each refused.

Every hostile file carries a payload that would create a canary file if it ran (a pickle
`__reduce__`, an import-time side effect in "remote code"). A sanity test proves the pickle
payload is live, so "canary absent" means "not executed", not "payload broken".
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers_serving import build_variant, synthetic
from tuneline.config import Params, load_params
from tuneline.errors import UnsafeArtifactError

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickling this runs `code` (the classic pickle remote-code-execution gadget)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (self.code,))


def canary_code(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').write('executed')"


def evil_pickle(path: Path, canary: Path) -> Path:
    path.write_bytes(pickle.dumps({"state_dict": Payload(canary_code(canary))}))
    return path


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(REPO, profile="smoke")


@pytest.fixture(scope="module")
def hf_model_dir(tmp_path_factory: pytest.TempPathFactory, params: Params) -> Path:
    """A genuine, loadable tiny HF classifier directory (safetensors)."""
    from tuneline.models import build_tiny_bert

    out = tmp_path_factory.mktemp("hf") / "model"
    texts = synthetic(60, 0)["text"].tolist()
    model, tok = build_tiny_bert(texts, ["ham", "spam"], params.train)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    (out / "labels.json").write_text(json.dumps({"labels": ["ham", "spam"]}))
    return out


@pytest.fixture(scope="module")
def variant_dir(tmp_path_factory: pytest.TempPathFactory, params: Params) -> Path:
    """A genuine ONNX variant directory (untrained tiny BERT, exported)."""
    base = tmp_path_factory.mktemp("variant")
    prepared = base / "data" / "prepared"
    prepared.mkdir(parents=True)
    synthetic(60, 0).to_parquet(prepared / "train.parquet", index=False)
    return build_variant(base, base / "variant", params, shuffle=False, steps=0)


def copy_dir(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest)
    return dest


def test_pickle_payload_is_live(tmp_path: Path) -> None:
    """Sanity: the payload does create the canary when something unpickles it."""
    canary = tmp_path / "canary"
    blob = evil_pickle(tmp_path / "model.pkl", canary)
    subprocess.run(
        [sys.executable, "-c", f"import pickle; pickle.load(open({str(blob)!r}, 'rb'))"],
        check=True,
        timeout=60,
    )
    assert canary.read_text() == "executed"


@pytest.mark.parametrize("fname", ["pytorch_model.bin", "model.pkl", "training_args.bin"])
def test_load_classifier_refuses_pickle(tmp_path: Path, hf_model_dir: Path, fname: str) -> None:
    from tuneline.models import load_classifier

    model_dir = copy_dir(hf_model_dir, tmp_path / "model")
    canary = tmp_path / "canary"
    evil_pickle(model_dir / fname, canary)
    with pytest.raises(UnsafeArtifactError, match="pickle") as err:
        load_classifier(model_dir)
    assert fname in str(err.value)
    assert not canary.exists()


def test_load_pretrained_refuses_pickle_only_dir(tmp_path: Path, hf_model_dir: Path) -> None:
    """A base model offered as pickle weights only (no safetensors) is refused by name."""
    from tuneline.models import load_pretrained

    model_dir = copy_dir(hf_model_dir, tmp_path / "model")
    (model_dir / "model.safetensors").unlink()
    canary = tmp_path / "canary"
    evil_pickle(model_dir / "pytorch_model.bin", canary)
    with pytest.raises(UnsafeArtifactError, match=r"pytorch_model\.bin"):
        load_pretrained(str(model_dir), ["ham", "spam"])
    assert not canary.exists()


def test_pickle_disguised_as_safetensors_is_not_unpickled(
    tmp_path: Path, hf_model_dir: Path
) -> None:
    """A pickle renamed model.safetensors passes the suffix check but is parsed as
    safetensors, which fails with a message; it is never unpickled."""
    from tuneline.models import load_classifier

    model_dir = copy_dir(hf_model_dir, tmp_path / "model")
    canary = tmp_path / "canary"
    evil_pickle(model_dir / "model.safetensors", canary)
    with pytest.raises(Exception) as err:
        load_classifier(model_dir)
    assert str(err.value).strip()
    assert not canary.exists()


def write_remote_code(model_dir: Path, canary: Path) -> None:
    code = f"{canary_code(canary)}\n\nclass Evil:\n    pass\n"
    for module in ("modeling_evil.py", "configuration_evil.py", "tokenization_evil.py"):
        (model_dir / module).write_text(code)


def test_config_asking_for_remote_code_is_refused(tmp_path: Path, hf_model_dir: Path) -> None:
    from tuneline.models import load_classifier, load_pretrained

    model_dir = copy_dir(hf_model_dir, tmp_path / "model")
    canary = tmp_path / "canary"
    write_remote_code(model_dir, canary)
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.Evil",
        "AutoModelForSequenceClassification": "modeling_evil.Evil",
    }
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeArtifactError, match="remote code"):
        load_classifier(model_dir)
    with pytest.raises(UnsafeArtifactError, match="remote code"):
        load_pretrained(str(model_dir), ["ham", "spam"])
    assert not canary.exists()


def test_tokenizer_asking_for_remote_code_is_not_run(tmp_path: Path, variant_dir: Path) -> None:
    """auto_map in tokenizer_config.json: the ORT classifiers load the tokenizer with remote
    code off, so the module is never imported (refused, or the built-in class is used)."""
    from serving.predictor import OnnxTextClassifier
    from tuneline.onnx_runtime import OnnxClassifier

    vdir = copy_dir(variant_dir, tmp_path / "variant")
    canary = tmp_path / "canary"
    write_remote_code(vdir, canary)
    tok_config = json.loads((vdir / "tokenizer_config.json").read_text())
    tok_config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.Evil", None]}
    (vdir / "tokenizer_config.json").write_text(json.dumps(tok_config))
    for loader in (OnnxClassifier, OnnxTextClassifier):
        try:
            loader(vdir)
        except (ValueError, OSError, UnsafeArtifactError) as exc:
            assert str(exc).strip()
    (vdir / "tokenizer.json").unlink()  # force the serving predictor's AutoTokenizer path
    try:
        OnnxTextClassifier(vdir)
    except (ValueError, OSError, UnsafeArtifactError) as exc:
        assert str(exc).strip()
    assert not canary.exists()


def malformed_onnx(kind: str, path: Path, good: Path) -> None:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    if kind == "garbage":
        path.write_bytes(b"\x08\x07garbage-not-a-protobuf" * 20)
        return
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        return
    x = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None, None])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 2])
    opsets = [helper.make_opsetid("", 17)]
    if kind == "escaping-external-data":
        # An initializer whose bytes live "outside the model directory" (a path traversal).
        w = numpy_helper.from_array(np.ones((1, 2), np.float32), "W")
        w.data_location = TensorProto.EXTERNAL
        w.ClearField("raw_data")
        for key, value in (("location", "../../../../etc/hostname"), ("length", "8")):
            entry = w.external_data.add()
            entry.key, entry.value = key, value
        cast = helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT)
        nodes = [cast, helper.make_node("MatMul", ["f", "W"], ["logits"])]
        graph = helper.make_graph(nodes, "g", [x], [y], [w])
    else:  # custom-op: an operator from an unregistered domain (would need a native library)
        nodes = [helper.make_node("Evil", ["input_ids"], ["logits"], domain="evil.ops")]
        graph = helper.make_graph(nodes, "g", [x], [y])
        opsets.append(helper.make_opsetid("evil.ops", 1))
    path.write_bytes(helper.make_model(graph, opset_imports=opsets).SerializeToString())


MALFORMED = ["garbage", "truncated", "escaping-external-data", "custom-op"]


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_onnx_is_refused_by_every_loader(
    tmp_path: Path, variant_dir: Path, kind: str
) -> None:
    from serving.predictor import OnnxTextClassifier
    from tuneline.onnx_runtime import OnnxClassifier

    vdir = copy_dir(variant_dir, tmp_path / "variant")
    malformed_onnx(kind, vdir / "model.onnx", variant_dir / "model.onnx")
    for loader in (OnnxTextClassifier, OnnxClassifier):
        with pytest.raises(Exception) as err:
            loader(vdir)
        message = str(err.value)
        assert "model.onnx" in message or "external data" in message.lower(), message


@pytest.fixture
def fresh_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNELINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TUNELINE_MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "home"


def registered_models() -> list[str]:
    from tuneline import registry

    return [m.name for m in registry.client().search_registered_models()]


@pytest.mark.parametrize("hostile", ["pickle", "garbage-onnx"])
def test_registry_refuses_hostile_variant(
    tmp_path: Path, variant_dir: Path, params: Params, fresh_registry: Path, hostile: str
) -> None:
    """The registry (what Bentos are packaged from) never receives a hostile variant."""
    from tasks.register import register_variant

    vdir = copy_dir(variant_dir, tmp_path / "variant")
    canary = tmp_path / "canary"
    if hostile == "pickle":
        evil_pickle(vdir / "model.pkl", canary)
        with pytest.raises(UnsafeArtifactError, match=r"model\.pkl"):
            register_variant(vdir, params=params, finetune_run_id=None, variant_run_id=None)
    else:
        malformed_onnx("garbage", vdir / "model.onnx", variant_dir / "model.onnx")
        with pytest.raises(Exception, match=r"model\.onnx"):
            register_variant(vdir, params=params, finetune_run_id=None, variant_run_id=None)
    assert not canary.exists()
    assert params.gate.registered_model not in registered_models()


def test_served_predictor_never_reads_stray_pickles(tmp_path: Path, variant_dir: Path) -> None:
    """The serving predictor reads model.onnx, labels.json and tokenizer files only: a pickle
    dropped beside them is inert (and registration, above, refuses such a directory)."""
    from serving.predictor import OnnxTextClassifier

    vdir = copy_dir(variant_dir, tmp_path / "variant")
    canary = tmp_path / "canary"
    for name in ("model.pkl", "pytorch_model.bin", "tokenizer.pkl"):
        evil_pickle(vdir / name, canary)
    preds = OnnxTextClassifier(vdir).predict(["win cash now", "team lunch"])
    assert len(preds) == 2
    assert not canary.exists()
