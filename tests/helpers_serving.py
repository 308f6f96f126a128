"""Shared helpers for tests that need a tiny ONNX variant, a DVC-committed project or a
served Bento: synthetic two-class data, `make_project`, `build_variant`, `build_variant_bento`
and `served` (a Bento on a free loopback port, its process group always killed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.synthetic import HAM, SPAM, synthetic_rows
from tuneline.config import Params, ServeParams


def synthetic(n: int, seed: int) -> pd.DataFrame:
    return synthetic_rows(n, seed)


def make_project(root: Path) -> None:
    """Prepared splits + validation report, committed with DVC (dvc.lock holds their md5s)."""
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True)
    for name, n, seed in (("train", 200, 1), ("val", 40, 2), ("test", 80, 3)):
        synthetic(n, seed).to_parquet(prepared / f"{name}.parquet", index=False)
    (prepared / "labels.json").write_text(json.dumps({"labels": ["ham", "spam"]}))
    (root / "data" / "validated").mkdir(parents=True)
    (root / "data" / "validated" / "report.json").write_text(json.dumps({"success": True}))
    outs = "".join(f"      - data/prepared/{s}.parquet\n" for s in ("train", "val", "test"))
    (root / "dvc.yaml").write_text(f"stages:\n  split:\n    cmd: 'true'\n    outs:\n{outs}")
    for cmd in (["init", "--no-scm", "-q"], ["commit", "-f", "-q", "split"]):
        subprocess.run([sys.executable, "-m", "dvc", *cmd], cwd=root, check=True, timeout=180)


def build_variant(root: Path, out: Path, params: Params, *, shuffle: bool, steps: int) -> Path:
    """A tiny BERT trained a few steps, exported to an ONNX variant directory."""
    import torch

    from tuneline.models import build_tiny_bert

    torch.manual_seed(0)
    torch.set_num_threads(1)
    train = pd.read_parquet(root / "data" / "prepared" / "train.parquet")
    if shuffle:  # the deliberately worse candidate: labels carry no signal
        train = train.assign(label=train["label"].sample(frac=1, random_state=7).to_numpy())
    model, tok = build_tiny_bert(train["text"].tolist(), ["ham", "spam"], params.train)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps):
        batch = train.sample(16, random_state=step)
        enc = tok(batch["text"].tolist(), padding=True, truncation=True, return_tensors="pt")
        model(**enc, labels=torch.tensor(batch["label"].to_numpy())).loss.backward()
        optim.step()
        optim.zero_grad()
    model.eval()

    class Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    out.mkdir(parents=True)
    enc = tok(["win cash", "lunch at the office"], padding=True, return_tensors="pt")
    dyn = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        Logits(model),
        (enc["input_ids"], enc["attention_mask"]),
        str(out / "model.onnx"),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    tok.save_pretrained(str(out))
    (out / "labels.json").write_text(json.dumps({"labels": ["ham", "spam"]}))
    variant = {
        "name": "fp32",
        "method": "onnx_fp32",
        "metrics": {},
        "parity": {"agreement": 1.0, "max_abs_logit": 1e-5},
        "max_seq_len": params.train.max_seq_len,
    }
    (out / "variant.json").write_text(json.dumps(variant))
    # the calibration and behaviour figures every compression candidate carries: the gate
    # refuses a variant without them (tasks/release/trust.py)
    from tasks.behaviour.cases import NO_CASES
    from tasks.behaviour.suite import check_candidate

    prepared = root / "data" / "prepared"
    # a serving test's project may hold only train.parquet: its rows stand in for val and test
    split = {
        name: pd.read_parquet(
            prepared / f"{name}.parquet"
            if (prepared / f"{name}.parquet").is_file()
            else prepared / "train.parquet"
        )
        for name in ("val", "test")
    }
    val, test = ((s["text"].tolist(), s["label"].tolist()) for s in split.values())
    check_candidate(out, val, test, params, NO_CASES)
    return out


def build_variant_bento(variant_dir: Path, params: Params, *, name: str, version: str) -> str:
    """Build a Bento for a variant directory without the registry (returns its tag)."""
    from tasks.release.package import build_bento

    return build_bento(variant_dir, name=name, version=version, params=params)


REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def served(
    target: str,
    log_path: Path,
    *,
    ready_timeout_s: float = 180,
    model_dir: Path | None = None,
    serve_config: Path | None = None,
    env: dict[str, str] | None = None,
    cpus: str | None = None,
) -> Iterator[str]:
    """Serve a built Bento (a tag) or the service from source, on a free 127.0.0.1 port.

    Args:
        target: a Bento tag, or "serving.service:Classifier" (then `model_dir` is required
            and the service is imported from this checkout: no Bento build needed).
        log_path: where the server's output goes (read on failure).
        ready_timeout_s: how long to wait for /readyz.
        model_dir: the ONNX variant to serve from source.
        serve_config: the serve_config.json with the limits (`write_serve_config`); required
            from source, where no Bento bundles one; with a tag it overrides the bundled one.
        env: extra environment for the server.
        cpus: pin the server and every process it spawns to these CPUs (taskset list).

    Yields:
        The base URL; the server's process group is killed on exit.
    """
    from tasks.release.package import bentoml_env
    from tasks.release.smoke import free_port, wait_ready
    from tuneline.processes import start_child, stop_group

    if model_dir is not None and serve_config is None:
        raise ValueError("serving from source needs serve_config: the service has no defaults")
    port = free_port()
    server_env = bentoml_env(**(env or {}))
    if model_dir is not None:
        server_env["TUNELINE_MODEL_DIR"] = str(model_dir)
    if serve_config is not None:
        server_env["TUNELINE_SERVE_CONFIG"] = str(serve_config)
    cmd = [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1"]
    cmd += ["--port", str(port)]
    if cpus is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    with open(log_path, "wb") as log:
        proc = start_child(cmd, env=server_env, log=log, cwd=REPO)
        try:
            base = f"http://127.0.0.1:{port}"
            if not wait_ready(base, proc, ready_timeout_s):
                raise RuntimeError(f"{target} not ready:\n{log_path.read_text()[-3000:]}")
            yield base
        finally:
            stop_group(proc)


@contextlib.contextmanager
def registry_project(
    base: Path, updates: dict[str, Any], *, token: str
) -> Iterator[tuple[Path, Params]]:
    """A DVC-committed project under `base`/project with the repo's params.yaml and configs/
    (plus `updates`, as `tuneline run` writes them), its own MLflow store and BentoML store
    under `base`/home, and `token` as the served endpoint's bearer token, for the block.

    Yields:
        (project root, its params under the smoke profile).
    """
    from tuneline.config import load_params, set_params

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNELINE_HOME", str(base / "home"))
        mp.setenv("BENTOML_HOME", str(base / "home" / "bentoml"))
        mp.setenv("BENTOML_DO_NOT_TRACK", "true")
        mp.setenv("TUNELINE_API_TOKEN", token)
        mp.delenv("TUNELINE_MLFLOW_TRACKING_URI", raising=False)
        root = base / "project"
        make_project(root)
        shutil.copy2(REPO / "params.yaml", root / "params.yaml")
        shutil.copytree(REPO / "configs", root / "configs")
        set_params(root, updates)
        yield root, load_params(root, profile="smoke")


def write_serve_config(path: Path, params: Params, **overrides: Any) -> Path:
    """params.serve (plus overrides, validated) as the serve_config.json the service reads,
    written by the package step's own writer."""
    from tasks.release.package import write_serve_config as write_for_service

    serve = ServeParams.model_validate({**params.serve.model_dump(), **overrides})
    return write_for_service(path, serve)


def set_env(updates: dict[str, str | None]) -> dict[str, str | None]:
    """Apply environment updates; returns the old values (None = was unset) for restore."""
    old = {k: os.environ.get(k) for k in updates}
    for key, value in updates.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return old


def variant_labels(variant_dir: Path) -> list[str]:
    labels: list[str] = json.loads((variant_dir / "labels.json").read_text())["labels"]
    return labels


__all__ = [
    "HAM",
    "SPAM",
    "build_variant",
    "build_variant_bento",
    "make_project",
    "registry_project",
    "served",
    "set_env",
    "synthetic",
    "variant_labels",
    "write_serve_config",
]
