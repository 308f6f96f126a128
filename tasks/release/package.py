"""Package: build a Bento that serves one registered version (ONNX + tokenizer bundled).

The Bento is built from a staging directory holding the serving package, the variant as
`model/`, and `serve_config.json` from params.serve, so what is served is exactly the
registered artifact. The BentoML store is <TUNELINE_HOME>/bentoml (BENTOML_HOME) unless
BENTOML_HOME is set; builds run the `bentoml` CLI in a subprocess so that store is honoured
even when bentoml was already imported with another one.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefect import task

from tasks.release.register import download_version
from tuneline import registry
from tuneline.config import Params, ServeParams
from tuneline.io import md5_file, write_json
from tuneline.processes import machine_cores, run_child
from tuneline.settings import get_settings

SERVING_DIR = Path(__file__).resolve().parents[2] / "serving"
SERVING_FILES = (
    "__init__.py",
    "service.py",
    "guard.py",
    "predictor.py",
    "runtimes.py",
    "tokens.py",
    "cache.py",
    "bulk.py",
)
BUILD_TIMEOUT_S = 300
SERVE_CONFIG = "serve_config.json"  # serving/service.py reads its limits from it, and only it


@dataclass(frozen=True)
class BentoResult:
    """A built Bento: its tag, the BentoML store holding it, and the variant it bundles."""

    tag: str
    bentoml_home: str
    version: str
    variant_dir: str


def bentoml_home() -> Path:
    """The BentoML store: $BENTOML_HOME, else <TUNELINE_HOME>/bentoml."""
    return Path(os.environ.get("BENTOML_HOME") or get_settings().root / "bentoml")


def bentoml_env(**extra: str) -> dict[str, str]:
    """Environment for bentoml subprocesses: our store, no usage tracking."""
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home()), "BENTOML_DO_NOT_TRACK": "true"}
    # The Bento must use what it bundles, not a developer override.
    env.pop("TUNELINE_MODEL_DIR", None)
    env.pop("TUNELINE_SERVE_CONFIG", None)
    env.update(extra)
    return env


def split_cores(workers: int, num_threads: int, cores: int) -> tuple[int, int]:
    """Workers and runtime threads per worker, 0s derived from `cores`.

    Both 0: one single-threaded worker per core (Python's per-request work then runs on
    every core too, not only the runtime's); one 0: the cores divided by the other, at
    least 1.

    Args:
        workers: serve.workers (0 = derive).
        num_threads: serve.num_threads (0 = derive).
        cores: the cores to split.

    Returns:
        (workers, num_threads), both >= 1.
    """
    cores = max(1, cores)
    if workers == 0 and num_threads == 0:
        return cores, 1
    if workers == 0:
        return max(1, cores // num_threads), num_threads
    if num_threads == 0:
        return workers, max(1, cores // workers)
    return workers, num_threads


def write_serve_config(path: Path | str, serve: ServeParams, *, cores: int | None = None) -> Path:
    """Write params.serve as the file the service reads its limits from (it has no defaults).

    serve.workers and serve.num_threads set to 0 are resolved here, from the cores of this
    machine, and written resolved; the file also records `cores` and which were derived.

    Args:
        path: where: a Bento's staging directory, or what $TUNELINE_SERVE_CONFIG names for
            the service served from source.
        serve: the limits, from the loaded params.
        cores: the cores to split; default those this process may run on.

    Returns:
        `path`.
    """
    cores = machine_cores() if cores is None else cores
    workers, threads = split_cores(serve.workers, serve.num_threads, cores)
    derived = [k for k in ("workers", "num_threads") if getattr(serve, k) == 0]
    config = {**serve.model_dump(), "workers": workers, "num_threads": threads}
    write_json(path, {**config, "cores": cores, "derived_from_cores": derived})
    return Path(path)


def bento_name(registered_model: str) -> str:
    """The registered model's name as BentoML accepts it (lowercase, [a-z0-9_.-])."""
    return re.sub(r"[^a-z0-9_.-]", "-", registered_model.lower()).strip("-._") or "tuneline"


def build_bento(variant_dir: Path | str, *, name: str, version: str, params: Params) -> str:
    """Build a Bento named `name:version` from a variant directory (reused if it exists).

    Args:
        variant_dir: the ONNX variant, bundled as `model/`.
        name: the Bento's name; version: its version.
        params: settings (params.serve becomes the Bento's serve_config.json).

    Returns:
        The Bento tag.

    Raises:
        RuntimeError: `bentoml build` failed (its output is in the message).
    """
    tag = f"{name}:{version}"
    if (bentoml_home() / "bentos" / name / version / "bento.yaml").exists():
        return tag
    with tempfile.TemporaryDirectory(prefix="tuneline-bento-") as tmp:
        ctx = Path(tmp)
        (ctx / "serving").mkdir()
        for fname in SERVING_FILES:
            shutil.copy2(SERVING_DIR / fname, ctx / "serving" / fname)
        shutil.copytree(variant_dir, ctx / "model")
        write_serve_config(ctx / SERVE_CONFIG, params.serve)
        shutil.copy2(SERVING_DIR / "bentofile.yaml", ctx / "bentofile.yaml")
        cmd = [sys.executable, "-m", "bentoml", "build", "-f", "bentofile.yaml"]
        cmd += ["--name", name, "--version", version, "-o", "tag", str(ctx)]
        proc = run_child(cmd, env=bentoml_env(), cwd=ctx, timeout=BUILD_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"bentoml build failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    found = re.search(r"__tag__:(\S+)", proc.stdout)
    return found.group(1) if found else tag


@task
def package_version(
    name: str, version: str, *, params: Params, workdir: Path | str | None = None
) -> BentoResult:
    """Download registered `version` and build its Bento; tag the version with the Bento tag.

    Args:
        name: registered model.
        version: registered version to package.
        params: settings (params.serve becomes the Bento's limits).
        workdir: where the variant is downloaded; default <TUNELINE_HOME>/versions.

    Returns:
        BentoResult with the tag; the Bento version is v<version>-<md5 of model.onnx>.
    """
    base = Path(workdir) if workdir else get_settings().root / "versions"
    variant_dir = download_version(name, version, base / f"{name}-v{version}")
    bento_version = f"v{version}-{md5_file(variant_dir / 'model.onnx')[:10]}"
    tag = build_bento(variant_dir, name=bento_name(name), version=bento_version, params=params)
    registry.set_version_tag(name, version, "bento_tag", tag)
    return BentoResult(tag, str(bentoml_home()), version, str(variant_dir))
