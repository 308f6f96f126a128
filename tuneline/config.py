"""The one typed loader for params.yaml and its profiles.

params.yaml holds every knob. A profile (configs/<name>.yaml) may only override keys that
already exist there, with the same type; every violation is reported at once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneline.dvcfile import output_holding, stage_outputs
from tuneline.errors import ConfigError

PARAMS_FILE = "params.yaml"
PROFILES_DIR = "configs"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BaseParams(_Frozen):
    seed: int = 42
    profile: str = "default"


class ValidationParams(_Frozen):
    min_rows: int = Field(50, ge=1)
    min_chars: int = Field(1, ge=1)
    max_chars: int = Field(100_000, ge=1)
    max_duplicate_rate: float = Field(0.2, ge=0, le=1)
    min_class_share: float = Field(0.02, ge=0, le=1)
    min_classes: int = Field(2, ge=2)


class CleanParams(_Frozen):
    strip_html: bool = True
    lowercase: bool = False


class AugmentParams(_Frozen):
    enabled: bool = True
    copies: int = Field(1, ge=0)
    rate: float = Field(0.1, ge=0, le=1)
    methods: tuple[Literal["synonym", "swap", "delete"], ...] = ("synonym", "swap", "delete")


class DataParams(_Frozen):
    source: str = "sms_spam"
    text_col: str = "text"
    label_col: str = "label"
    labels: tuple[str, ...] = ()
    max_rows: int = Field(0, ge=0)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    validation: ValidationParams = ValidationParams()
    clean: CleanParams = CleanParams()
    augment: AugmentParams = AugmentParams()


class TrainParams(_Frozen):
    model: str = "minilm"
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    max_seq_len: int = Field(128, ge=8)
    early_stopping_patience: int = Field(2, ge=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False
    freeze_embeddings: bool = False
    freeze_layers: int = Field(0, ge=0)
    lora: bool = False
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    loss: Literal["ce", "weighted_ce", "focal"] = "weighted_ce"
    focal_gamma: float = Field(2.0, ge=0)
    nproc: int = Field(1, ge=1)
    nnodes: int = Field(1, ge=1)
    node_rank: int = Field(0, ge=0)
    rdzv_endpoint: str = ""
    save_steps: int = Field(50, ge=1)
    eval_steps: int = Field(50, ge=1)
    logging_steps: int = Field(10, ge=1)
    num_threads: int = Field(0, ge=0)
    tiny_layers: int = Field(2, ge=1)
    tiny_hidden: int = Field(64, ge=8)
    tiny_heads: int = Field(2, ge=1)
    tiny_intermediate: int = Field(128, ge=8)
    tiny_vocab_size: int = Field(2000, ge=100)
    dropout: float | None = Field(None, ge=0, lt=1)
    save_total_limit: int = Field(2, ge=1)


class CompressParams(_Frozen):
    opset: int = Field(18, ge=18)
    parity_max_abs_logit: float = 1e-3
    parity_min_agreement: float = 0.999
    quant_parity_max_abs_logit: float = 1.0
    quant_parity_min_agreement: float = 0.97
    fp32: bool = True
    dynamic_int8: bool = True
    static_int8: bool = True
    calibration_rows: int = 128
    prune_unstructured: bool = True
    prune_structured: bool = True
    sparsity: float = Field(0.3, ge=0, lt=1)
    prune_finetune_steps: int = 0
    distill: bool = True
    distill_layers: int = 3
    distill_temperature: float = 2.0
    distill_alpha: float = 0.5
    distill_epochs: float = Field(1.0, gt=0)
    distill_max_steps: int = -1
    fp16: bool = False
    accuracy_budget: float = 0.99
    max_recall_drop: float = 0.05
    num_threads: int = 1
    bench_rows: int = 200


class GateParams(_Frozen):
    registered_model: str = "tuneline-classifier"
    min_accuracy: float = 0.8
    min_macro_f1: float = 0.7
    alpha: float = 0.05
    max_recall_drop: float = 0.05
    max_p95_latency_ms: float = 200.0
    max_size_mb: float = 200.0
    min_class_recall: float = Field(0.1, ge=0, le=1)
    latency_rows: int = Field(100, ge=1)
    smoke_timeout_s: float = Field(120.0, gt=0)
    smoke_texts: int = Field(8, ge=1)
    smoke_atol: float = Field(1e-4, gt=0)


class ServeParams(_Frozen):
    host: str = "127.0.0.1"
    port: int = 3000
    max_texts: int = 64
    max_chars: int = 5000
    timeout_s: int = 30
    max_batch_size: int = 32
    max_latency_ms: int = 1000
    max_concurrency: int = 64
    num_threads: int = Field(1, ge=1)


class RetrainParams(_Frozen):
    cron: str = "0 3 * * 1"
    deployment: str = "tuneline-retraining"
    timezone: str = "UTC"


class Params(_Frozen):
    """Every setting of the pipeline, validated and frozen."""

    base: BaseParams = BaseParams()
    data: DataParams = DataParams()
    train: TrainParams = TrainParams()
    compress: CompressParams = CompressParams()
    gate: GateParams = GateParams()
    serve: ServeParams = ServeParams()
    retrain: RetrainParams = RetrainParams()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: file not found"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML ({exc})"]) from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError([f"{path}: top level must be a mapping"])
    return loaded


def _same_type(base: Any, new: Any) -> bool:
    if isinstance(base, bool) or isinstance(new, bool):
        return isinstance(base, bool) and isinstance(new, bool)
    if isinstance(base, float) and isinstance(new, int):
        return True  # an integer literal for a float knob is not a type change
    if base is None:
        return True
    return type(base) is type(new)


def check_profile(base: dict[str, Any], profile: dict[str, Any], where: str = "") -> list[str]:
    """List every key in `profile` that is unknown in `base` or changes its type."""
    problems: list[str] = []
    for key, value in profile.items():
        dotted = f"{where}{key}"
        if key not in base:
            problems.append(f"unknown key '{dotted}' (profiles may only override existing keys)")
            continue
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                problems.append(f"type change for '{dotted}': mapping -> {type(value).__name__}")
            else:
                problems.extend(check_profile(base[key], value, f"{dotted}."))
        elif not _same_type(base[key], value):
            problems.append(
                f"type change for '{dotted}': {type(base[key]).__name__} -> {type(value).__name__}"
            )
    return problems


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def load_params(
    root: Path | str = ".",
    profile: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Params:
    """Read params.yaml, layer the profile and overrides on top, and validate everything.

    Args:
        root: project directory holding params.yaml and configs/.
        profile: profile name; None uses `base.profile` from params.yaml.
        overrides: dotted keys (``{"data.source": "x.csv"}``), checked like a profile.

    Returns:
        The frozen, validated settings.

    Raises:
        ConfigError: listing every unknown key, type change and invalid value.
    """
    root = Path(root)
    raw = _read_yaml(root / PARAMS_FILE)
    name = profile or str(raw.get("base", {}).get("profile", "default"))
    problems: list[str] = []
    merged = raw
    if name != "default":
        prof_path = root / PROFILES_DIR / f"{name}.yaml"
        if not prof_path.exists():
            available = sorted(p.stem for p in (root / PROFILES_DIR).glob("*.yaml"))
            raise ConfigError([f"profile '{name}' not found (available: default, {available})"])
        prof = _read_yaml(prof_path)
        problems += [f"{prof_path.name}: {p}" for p in check_profile(raw, prof)]
        merged = _merge(merged, prof)
    if overrides:
        over = _nest(overrides)
        problems += [f"override: {p}" for p in check_profile(raw, over)]
        merged = _merge(merged, over)
    merged = _merge(merged, {"base": {"profile": name}})
    source = (merged.get("data") or {}).get("source")
    if isinstance(source, str):
        problems += [p for p in (source_location_problem(source, root),) if p]
    if problems:
        raise ConfigError(problems)
    try:
        return Params.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(
            [f"'{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in exc.errors()]
        ) from exc


def misplaced_source(source: str, output: Path | str, stage: str, outputs: Iterable[str]) -> str:
    """The message for a data source kept where a DVC stage writes (it would be deleted)."""
    return (
        f"data.source '{source}' lies inside {output}, an output of DVC stage '{stage}': DVC "
        "deletes and rewrites it on every run, so the file would be lost. Keep your data "
        f"anywhere outside the stage outputs ({', '.join(outputs)}), e.g. in data/user/, "
        "and point --data (or data.source) there"
    )


def source_location_problem(source: str, root: Path | str) -> str | None:
    """Why `source` must not be read where it is (inside a dvc.yaml stage output), or None.

    Args:
        source: `data.source`: a built-in name or a file path (relative to `root`).
        root: the project directory holding dvc.yaml.
    """
    held = output_holding(source, root)
    if held is None:
        return None
    base = Path(root).resolve()

    def shown(path: Path) -> str:
        return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)

    output, stage = held
    return misplaced_source(source, shown(output), stage, sorted(map(shown, stage_outputs(base))))


def set_params(root: Path | str, updates: dict[str, Any]) -> bool:
    """Write dotted-key updates into params.yaml, keeping its comments (like `dvc exp run -S`).

    The file is replaced atomically and only when a value actually changes, so DVC sees
    the same params and reruns nothing.

    Returns:
        True if the file changed.
    """
    from ruamel.yaml import YAML

    path = Path(root) / PARAMS_FILE
    ryaml = YAML()
    ryaml.preserve_quotes = True
    doc = ryaml.load(path.read_text(encoding="utf-8"))
    base = _read_yaml(path)
    problems = check_profile(base, _nest(updates))
    if problems:
        raise ConfigError(problems)
    changed = False
    for key, value in updates.items():
        node = doc
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        if node[parts[-1]] != value:
            node[parts[-1]] = value
            changed = True
    if changed:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".params.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            ryaml.dump(doc, fh)
        os.replace(tmp, path)
    return changed
