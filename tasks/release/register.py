"""Register: the chosen ONNX variant becomes a new version of the registered model (@challenger).

The registry holds the artifact that will be served: an MLflow ONNX model (model.onnx with a
signature and an input example) whose extra files are the tokenizer, labels.json and
variant.json. No pickle: no python model object is serialized. `download_version` lays a
registered version out again as a variant directory, for the gate and the Bento.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prefect import task

from serving.predictor import OnnxTextClassifier
from tuneline import registry
from tuneline.config import CompressParams, Params
from tuneline.errors import UnsafeArtifactError
from tuneline.io import md5_file
from tuneline.lineage import lineage_tags, log_datasets
from tuneline.models import check_safe_model_dir

REGISTER_EXPERIMENT = "registry"
REQUIRED_FILES = ("model.onnx", "labels.json", "variant.json")
EXAMPLE_TEXT = "an example text to classify"


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered model version: name, version number and the `models:/` URI."""

    name: str
    version: str
    uri: str
    run_id: str
    reused: bool = False  # the same ONNX file on the same test split was already registered


def parity_from_variant(variant: dict[str, Any], compress: CompressParams) -> bool:
    """Whether variant.json records a passed ONNX parity check (nothing recorded = not passed).

    Accepts an explicit verdict ("parity_passed" or parity.passed) or the measured stats
    (parity.agreement, parity.max_abs_logit) judged against params.compress thresholds; a
    reduced-precision variant (its recorded precision is not fp32; without one, its method or
    name says quantize/int8/fp16/bf16) gets the quant_* ones.

    Args:
        variant: the parsed variant.json.
        compress: the parity thresholds (`params.compress`).

    Returns:
        Whether parity passed.
    """
    if isinstance(variant.get("parity_passed"), bool):
        return bool(variant["parity_passed"])
    parity = variant.get("parity")
    if not isinstance(parity, dict):
        return False
    if isinstance(parity.get("passed"), bool):
        return bool(parity["passed"])
    if "agreement" not in parity or "max_abs_logit" not in parity:
        return False
    if variant.get("precision"):  # what the compression search records
        quant = str(variant["precision"]) != "fp32"
    else:  # a variant dir made by hand: its method or name says what it is
        tag = f"{variant.get('method', '')} {variant.get('name', '')}".lower()
        quant = any(word in tag for word in ("quantiz", "int8", "fp16", "bf16"))
    min_agreement = compress.quant_parity_min_agreement if quant else compress.parity_min_agreement
    max_abs = compress.quant_parity_max_abs_logit if quant else compress.parity_max_abs_logit
    return float(parity["agreement"]) >= min_agreement and float(parity["max_abs_logit"]) <= max_abs


def check_variant_dir(onnx_dir: Path) -> dict[str, Any]:
    """Refuse a variant directory missing a contract file or holding pickles.

    Args:
        onnx_dir: the variant directory.

    Returns:
        The parsed variant.json.

    Raises:
        FileNotFoundError: naming every missing file.
        UnsafeArtifactError: a pickle-format file is present.
    """
    missing = [name for name in REQUIRED_FILES if not (onnx_dir / name).exists()]
    has_tokenizer = (onnx_dir / "tokenizer.json").exists() or (onnx_dir / "vocab.txt").exists()
    if not has_tokenizer:
        missing.append("tokenizer.json (or vocab.txt)")
    if missing:
        raise FileNotFoundError(f"{onnx_dir}: variant directory lacks {', '.join(missing)}")
    check_safe_model_dir(onnx_dir)
    if any(p.is_dir() for p in onnx_dir.iterdir()):
        raise UnsafeArtifactError(f"{onnx_dir}: nested directories are not part of the contract")
    variant: dict[str, Any] = json.loads((onnx_dir / "variant.json").read_text(encoding="utf-8"))
    return variant


@task(retries=0)
def register_variant(
    onnx_dir: Path | str,
    *,
    params: Params,
    finetune_run_id: str | None,
    variant_run_id: str | None,
    project_root: Path | str = ".",
) -> RegisteredVersion:
    """Log the variant as an MLflow ONNX model, register it, tag lineage, set @challenger.

    Args:
        onnx_dir: ONNX variant directory (model.onnx, tokenizer files, labels.json, variant.json).
        params: settings; `gate.registered_model` names the registered model.
        finetune_run_id: MLflow run of the fine-tune (lineage tag).
        variant_run_id: MLflow run of the compression/export of this variant (lineage tag).
        project_root: project directory, for git commit, split md5s and the validation result.

    Returns:
        The new RegisteredVersion, or the one already registered from this very variant run
        (`reused`).

    Raises:
        FileNotFoundError / UnsafeArtifactError: the directory breaks the contract.
    """
    from mlflow.exceptions import MlflowException

    onnx_dir = Path(onnx_dir)
    variant = check_variant_dir(onnx_dir)
    name = params.gate.registered_model
    classifier = OnnxTextClassifier(onnx_dir)
    tags = lineage_tags(project_root)
    onnx_md5 = md5_file(onnx_dir / "model.onnx")
    existing = find_registered(name, onnx_md5, tags.get("data_md5_test", ""), variant_run_id)
    if existing is not None:
        return existing
    tags.update(
        {
            "onnx_md5": onnx_md5,
            "finetune_run_id": finetune_run_id or "",
            "variant_run_id": variant_run_id or "",
            "variant_name": str(variant.get("name", onnx_dir.name)),
            "variant_method": str(variant.get("method", "")),
            # what serves it: the registered artifact is the ONNX file either way
            "runtime": str(variant.get("runtime", "onnxruntime")),
            "precision": str(variant.get("precision", "fp32")),
            "parity_passed": str(parity_from_variant(variant, params.compress)).lower(),
            "labels": json.dumps(classifier.labels),
            "size_mb": f"{(onnx_dir / 'model.onnx').stat().st_size / 2**20:.4f}",
        }
    )
    version, run_id = log_registered_model(onnx_dir, name, variant, classifier, tags)
    mlc = registry.client()
    for run in sorted({finetune_run_id or "", run_id} - {""}):  # Dataset column: data version
        with contextlib.suppress(MlflowException):  # a fine-tune run id from another store
            log_datasets(mlc, run, project_root)
    for key, value in tags.items():
        registry.set_version_tag(name, version, key, value)
    registry.with_retries(
        lambda: mlc.set_registered_model_alias(name, registry.CHALLENGER, version)
    )
    return RegisteredVersion(name, version, f"models:/{name}/{version}", run_id)


def log_registered_model(
    onnx_dir: Path,
    name: str,
    variant: dict[str, Any],
    classifier: OnnxTextClassifier,
    tags: dict[str, str],
) -> tuple[str, str]:
    """Log `onnx_dir` as an MLflow ONNX model in a `registry` run and register it as `name`.

    The signature and input example come from the variant's own tokenizer and session; the
    tokenizer, labels.json and variant.json travel as extra files; the variant's numeric
    metrics are logged on the run.

    Args:
        onnx_dir: the checked variant directory.
        name: registered model.
        variant: the parsed variant.json.
        classifier: the variant loaded for inference.
        tags: the run's tags (lineage and variant).

    Returns:
        (the new version, the MLflow run id).
    """
    import mlflow
    import mlflow.onnx
    import onnx
    from mlflow.models import infer_signature

    example = classifier.encode([EXAMPLE_TEXT])
    logits = classifier.run(example)
    signature = infer_signature(example, {"logits": logits})
    extra = sorted(str(p) for p in onnx_dir.iterdir() if p.is_file() and p.name != "model.onnx")
    metrics = {
        k: float(v)
        for k, v in (variant.get("metrics") or {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    registry.client()
    exp_id = registry.experiment_id(REGISTER_EXPERIMENT)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"register-{tags['variant_name']}") as run:
        mlflow.set_tags(tags)
        if metrics:
            mlflow.log_metrics(metrics)
        info = mlflow.onnx.log_model(
            onnx.load(str(onnx_dir / "model.onnx")),
            name="model",
            signature=signature,
            input_example=example,
            # Pinned here so MLflow does not spawn a process to infer requirements.
            pip_requirements=["onnxruntime", "onnx", "tokenizers", "numpy"],
            save_as_external_data=False,
            extra_files=extra,
            registered_model_name=name,
            metadata={"variant": variant.get("name"), "labels": classifier.labels},
            onnx_execution_providers=["CPUExecutionProvider"],
        )
    return str(info.registered_model_version), str(run.info.run_id)


def find_registered(
    name: str, onnx_md5: str, test_md5: str, variant_run_id: str | None
) -> RegisteredVersion | None:
    """The version already registered from this very variant run (a cached rerun), if any:
    same variant run, same ONNX file, same test split.

    Registering it again would only add a duplicate version and a needless gate.

    Args:
        name: registered model.
        onnx_md5: md5 of the variant's model.onnx.
        test_md5: md5 of the test split it was scored on (its lineage tag).
        variant_run_id: the compression run of the variant.

    Returns:
        That version (`reused`), or None.
    """
    from mlflow.exceptions import MlflowException

    mlc = registry.client()
    try:
        versions = registry.with_retries(
            lambda: mlc.search_model_versions(f"name = '{name}'", max_results=1000)
        )
    except MlflowException:
        return None
    for mv in sorted(versions, key=lambda v: -int(v.version)):
        same_run = mv.tags.get("variant_run_id", "") == (variant_run_id or "")
        if (
            same_run
            and mv.tags.get("onnx_md5") == onnx_md5
            and mv.tags.get("data_md5_test") == test_md5
        ):
            return RegisteredVersion(
                name, str(mv.version), f"models:/{name}/{mv.version}", mv.run_id or "", True
            )
    return None


def download_version(name: str, version: str, dest: Path | str) -> Path:
    """Download a registered version and lay it out as an ONNX variant directory.

    The registry holds an MLflow ONNX model (MLmodel, model.onnx, extra_files/ with the
    tokenizer, labels.json and variant.json); `dest` gets model.onnx plus those files flat.

    Args:
        name: registered model; version: the version; dest: filled (replaced if it exists).

    Returns:
        `dest`, ready for serving.predictor.OnnxTextClassifier.
    """
    import mlflow.artifacts

    registry.client()
    dest = Path(dest)
    raw = dest.with_name(dest.name + ".download")
    shutil.rmtree(raw, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    registry.with_retries(
        lambda: mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(raw)
        )
    )
    mlmodel = yaml.safe_load((raw / "MLmodel").read_text(encoding="utf-8"))
    onnx_file = mlmodel["flavors"]["onnx"]["data"]
    dest.mkdir(parents=True)
    shutil.move(str(raw / onnx_file), dest / "model.onnx")
    extra = raw / "extra_files"
    if extra.is_dir():
        for path in extra.iterdir():
            shutil.move(str(path), dest / path.name)
    shutil.rmtree(raw, ignore_errors=True)
    return dest
