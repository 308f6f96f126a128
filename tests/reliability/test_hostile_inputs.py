"""Hostile inputs: model files placed where the pipeline reads models, and requests to the
served endpoint.

Model files: none is executed, each refused. Every hostile file carries a payload that would
create a canary file if it ran (a pickle `__reduce__`, an import-time side effect in "remote
code"). A sanity test proves the pickle payload is live, so "canary absent" means "not
executed", not "payload broken".

Requests (the service served from this checkout, a non-ASCII bearer token configured): a
non-ASCII Authorization header, a chunked body far over the cap, headers far over the cap, and
thousands of unknown paths each get a JSON 4xx, and none grows the worker or /metrics.
Figures go to $TUNELINE_RELIABILITY_OUT/hostile_limits.json.
"""

from __future__ import annotations

import collections
import json
import pickle
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.helpers_serving import build_variant, served, synthetic, write_serve_config
from tests.reliability_figures import write_figures
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
    """auto_map in tokenizer_config.json: the ORT classifier loads the tokenizer with remote
    code off, so the module is never imported (refused, or the built-in class is used), both
    from tokenizer.json and through AutoTokenizer."""
    from serving.predictor import OnnxTextClassifier

    vdir = copy_dir(variant_dir, tmp_path / "variant")
    canary = tmp_path / "canary"
    write_remote_code(vdir, canary)
    tok_config = json.loads((vdir / "tokenizer_config.json").read_text())
    tok_config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.Evil", None]}
    (vdir / "tokenizer_config.json").write_text(json.dumps(tok_config))
    try:
        OnnxTextClassifier(vdir)
    except (ValueError, OSError, UnsafeArtifactError) as exc:
        assert str(exc).strip()
    (vdir / "tokenizer.json").unlink()  # force the predictor's AutoTokenizer path
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

    vdir = copy_dir(variant_dir, tmp_path / "variant")
    malformed_onnx(kind, vdir / "model.onnx", variant_dir / "model.onnx")
    with pytest.raises(Exception) as err:
        OnnxTextClassifier(vdir)
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
    from tasks.release.register import register_variant

    vdir = copy_dir(variant_dir, tmp_path / "variant")
    canary = tmp_path / "canary"
    if hostile == "pickle":
        evil_pickle(vdir / "model.pkl", canary)
        with pytest.raises(UnsafeArtifactError, match=r"model\.pkl"):
            register_variant.fn(vdir, params=params, finetune_run_id=None, variant_run_id=None)
    else:
        malformed_onnx("garbage", vdir / "model.onnx", variant_dir / "model.onnx")
        with pytest.raises(Exception, match=r"model\.onnx"):
            register_variant.fn(vdir, params=params, finetune_run_id=None, variant_run_id=None)
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


# --- hostile requests to the served endpoint -------------------------------------------------

SERVED_TOKEN = "jeton-clé-ü"  # non-ASCII on purpose: such a token made every request a 500
AUTH = {b"Authorization": b"Bearer " + SERVED_TOKEN.encode("utf-8")}
PAYLOAD = {"texts": ["win cash now"]}
TAG_ENV = "TUNELINE_HOSTILE_TAG"
MB = 1024 * 1024
FIGURES: dict[str, Any] = {}


@dataclass(frozen=True)
class Server:
    base: str
    worker: psutil.Process


def worker_process(tag: str) -> psutil.Process:
    """The BentoML worker of the server started with `tag` in its environment (it inherits
    the environment; other servers on this machine do not carry the tag)."""
    for proc in psutil.process_iter(["cmdline", "environ"]):
        env = proc.info["environ"] or {}
        if env.get(TAG_ENV) == tag and "_bentoml_impl.worker" in " ".join(
            proc.info["cmdline"] or []
        ):
            return proc
    raise LookupError(f"no BentoML worker with {TAG_ENV}={tag}")


def rss_mb(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss) / MB


@pytest.fixture(scope="module")
def server(
    variant_dir: Path, params: Params, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("hostile-serve")
    config = write_serve_config(root / "serve_config.json", params)
    tag = uuid.uuid4().hex
    env = {"TUNELINE_API_TOKEN": SERVED_TOKEN, TAG_ENV: tag}
    with served(
        "serving.service:Classifier",
        root / "serve.log",
        model_dir=variant_dir,
        serve_config=config,
        env=env,
    ) as base:
        with httpx.Client(base_url=base, timeout=60) as client:  # the first predict loads code
            assert client.post("/predict", json=PAYLOAD, headers=AUTH).status_code == 200
        yield Server(base, worker_process(tag))
    write_figures("hostile_limits.json", FIGURES)


def test_served_non_ascii_bearer_gets_401(server: Server) -> None:
    """Used to hang 35 s, then 500 (compare_digest on a non-ASCII str)."""
    with httpx.Client(base_url=server.base, timeout=60) as client:
        started = time.perf_counter()
        refused = client.post(
            "/predict", json=PAYLOAD, headers={b"Authorization": b"Bearer caf\xe9"}
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
        accepted = client.post("/predict", json=PAYLOAD, headers=AUTH)
    assert refused.status_code == 401, refused.text
    assert "bearer" in refused.json()["error"]
    assert accepted.status_code == 200, accepted.text  # the non-ASCII token itself works
    FIGURES["non_ascii_bearer"] = {
        "status": refused.status_code,
        "ms": round(elapsed_ms, 1),
        "configured_non_ascii_token_status": accepted.status_code,
    }


def test_served_chunked_body_over_cap_gets_413(server: Server) -> None:
    """A chunked body (no Content-Length) is counted as it streams: 413, never parsed.
    It used to be read and parsed whole (84 MB took the worker from 565 MB to 1,896 MB)."""
    body_mb = 50

    def body() -> Iterator[bytes]:
        yield b'{"texts": ["'
        for _ in range(body_mb * 16):
            yield b"a" * (64 * 1024)
        yield b'"]}'

    before = rss_mb(server.worker)
    with httpx.Client(base_url=server.base, timeout=60) as client:
        headers = {**AUTH, b"Content-Type": b"application/json"}
        resp = client.post("/predict", content=body(), headers=headers)
        after = rss_mb(server.worker)
        still_serving = client.post("/predict", json=PAYLOAD, headers=AUTH).status_code
    assert "content-length" not in resp.request.headers  # it really was chunked
    assert resp.status_code == 413, resp.text
    assert "request body over" in resp.json()["error"]
    assert still_serving == 200
    # A body read whole would grow the worker by at least its size; the guard keeps <= the cap.
    assert after - before < body_mb / 2, (before, after)
    FIGURES["chunked_body"] = {
        "body_mb": body_mb,
        "status": resp.status_code,
        "error": resp.json()["error"],
        "worker_rss_mb_before": round(before, 1),
        "worker_rss_mb_after": round(after, 1),
    }


def test_served_oversized_headers_get_431(server: Server) -> None:
    """uvicorn's httptools parser has no header limit (a 20 MB header used to get 200)."""
    header_mb = 20
    with httpx.Client(base_url=server.base, timeout=60) as client:
        resp = client.post(
            "/predict", json=PAYLOAD, headers={**AUTH, b"X-Pad": b"a" * (header_mb * MB)}
        )
        normal = client.post("/predict", json=PAYLOAD, headers={**AUTH, b"X-Pad": b"a" * 1000})
    assert resp.status_code == 431, resp.text[:500]
    assert "request headers over" in resp.json()["error"]
    assert normal.status_code == 200
    FIGURES["oversized_headers"] = {
        "header_mb": header_mb,
        "status": resp.status_code,
        "error": resp.json()["error"],
        "worker_rss_mb_after": round(rss_mb(server.worker), 1),
    }


def test_served_unknown_paths_do_not_grow_metrics(server: Server) -> None:
    """Every unknown path used to become new series on /metrics (5,000 paths: 52 KB -> 23 MB),
    even refused with 401. Now each gets a JSON 404 before BentoML's metrics see it."""
    n = 5000
    paths = [f"/probe-{uuid.uuid4().hex[:12]}" for _ in range(n)]
    statuses: collections.Counter[int] = collections.Counter()
    with httpx.Client(base_url=server.base, timeout=60) as client:
        before = client.get("/metrics").text
        for i, path in enumerate(paths):  # half with the token, half without
            resp = client.get(path, headers=AUTH if i % 2 else {})
            statuses[resp.status_code] += 1
        after = client.get("/metrics").text
        known = {
            path: client.get(path, headers=AUTH).status_code
            for path in ("/", "/docs.json", "/static_content/swagger-ui.css", "/livez")
        }
    leaked = len(set(paths) & set(re.findall(r'endpoint="([^"]*)"', after)))
    sizes = {"metrics_bytes_before": len(before), "metrics_bytes_after": len(after)}
    assert leaked == 0, {"probe_paths_on_metrics": leaked, **sizes}
    assert len(after) < 2 * len(before), sizes
    assert statuses == {404: n}, statuses
    assert "no such endpoint" in resp.json()["error"]
    assert known == dict.fromkeys(known, 200), known  # what the service routes still answers
    FIGURES["unknown_paths"] = {
        "paths": n,
        "statuses": {str(k): v for k, v in statuses.items()},
        **sizes,
    }
