"""The one typed loader for params.yaml and its profiles.

params.yaml holds every knob, and only there: no field has a default in code, so a key
missing from the file fails at load, named, instead of running on a value nobody reads. A
profile (configs/<name>.yaml) may only override keys that already exist there, with the same
type; every violation is reported at once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuneline.errors import ConfigError
from tuneline.source_location import source_location_problem
from tuneline.yaml_layers import check_profile, merge, nest, read_yaml

PARAMS_FILE = "params.yaml"
PROFILES_DIR = "configs"
# pydantic's error types for a key absent from params.yaml and a section that is no mapping
_SHAPE_ERRORS = {"missing": "missing key '{}'", "model_type": "'{}' must be a mapping"}
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # a file name in configs/, never a path
Severity = Literal["error", "warning"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BaseParams(_Frozen):
    seed: int = Field(ge=0)
    profile: str


class SeverityParams(_Frozen):
    """What a failed check does: `error` stops the run at validation, `warning` is printed and
    recorded and the run goes on. Checks without which training is impossible or meaningless
    (row count, columns, label types, a class too small for every split, leakage, encoding,
    the hard length and duplicate bounds) are always errors and are not listed."""

    text_not_empty: Severity
    text_not_whitespace: Severity
    text_no_nul: Severity
    label_in_set: Severity
    label_case: Severity
    min_class_share: Severity
    duplicate_share: Severity
    long_texts: Severity


class ValidationParams(_Frozen):
    min_rows: int = Field(ge=1)
    min_chars: int = Field(ge=1)
    max_chars: int = Field(ge=1)
    long_text_chars: int = Field(ge=1)
    max_duplicate_rate: float = Field(ge=0, lt=1)
    warn_duplicate_rate: float = Field(ge=0, lt=1)
    min_class_share: float = Field(ge=0, lt=1)
    min_classes: int = Field(ge=2)
    severity: SeverityParams

    @model_validator(mode="after")
    def _ordered(self) -> ValidationParams:
        problems = []
        if self.min_chars > self.max_chars:
            problems.append(f"min_chars {self.min_chars} > max_chars {self.max_chars}")
        if self.long_text_chars > self.max_chars:
            problems.append(
                f"long_text_chars {self.long_text_chars} > max_chars {self.max_chars} "
                "(the warning would never show before the hard bound refuses)"
            )
        if self.warn_duplicate_rate > self.max_duplicate_rate:
            problems.append(
                f"warn_duplicate_rate {self.warn_duplicate_rate} > max_duplicate_rate "
                f"{self.max_duplicate_rate}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class CleanParams(_Frozen):
    strip_html: bool
    lowercase: bool


class AugmentParams(_Frozen):
    enabled: bool
    copies: int = Field(ge=0)
    rate: float = Field(ge=0, le=1)
    methods: tuple[Literal["synonym", "swap", "delete"], ...]


class DataParams(_Frozen):
    source: str
    text_col: str
    label_col: str
    labels: tuple[str, ...]
    label_case: Literal["merge", "preserve"]
    max_rows: int = Field(ge=0)
    val_fraction: float = Field(gt=0, lt=1)
    test_fraction: float = Field(gt=0, lt=1)
    validation: ValidationParams
    clean: CleanParams
    augment: AugmentParams

    @model_validator(mode="after")
    def _train_left(self) -> DataParams:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction {self.val_fraction} + test_fraction {self.test_fraction} >= 1 "
                "leaves no rows to train on"
            )
        return self


class TrainParams(_Frozen):
    model: str
    epochs: float = Field(ge=0)  # 0 = auto (tasks/finetune/budget.py)
    min_steps: int = Field(ge=1)
    max_epochs: int = Field(ge=1)
    max_steps: int = Field(ge=-1)  # -1 (or 0): the epochs decide
    batch_size: int = Field(ge=1)
    grad_accum: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    warmup_ratio: float = Field(ge=0, le=1)
    weight_decay: float = Field(ge=0)
    max_seq_len: int = Field(ge=8)
    early_stopping_patience: int = Field(ge=0)
    early_stopping_threshold: float = Field(ge=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"]
    gradient_checkpointing: bool
    freeze_embeddings: bool
    freeze_layers: int = Field(ge=0)
    lora: bool
    lora_r: int = Field(ge=1)
    lora_alpha: int = Field(ge=1)
    lora_dropout: float = Field(ge=0, lt=1)
    loss: Literal["ce", "weighted_ce", "focal"]
    focal_gamma: float = Field(ge=0)
    nproc: int = Field(ge=1)
    nnodes: int = Field(ge=1)
    node_rank: int = Field(ge=0)
    rdzv_endpoint: str
    save_steps: int = Field(ge=1)
    eval_steps: int = Field(ge=1)
    logging_steps: int = Field(ge=1)
    num_threads: int = Field(ge=0)
    tiny_layers: int = Field(ge=1)
    tiny_hidden: int = Field(ge=8)
    tiny_heads: int = Field(ge=1)
    tiny_intermediate: int = Field(ge=8)
    tiny_vocab_size: int = Field(ge=100)
    dropout: float | None = Field(ge=0, lt=1)
    save_total_limit: int = Field(ge=1)


class CompressParams(_Frozen):
    opset: int = Field(ge=18)
    parity_max_abs_logit: float = Field(gt=0)
    parity_min_agreement: float = Field(ge=0, le=1)
    quant_parity_max_abs_logit: float = Field(gt=0)
    quant_parity_min_agreement: float = Field(ge=0, le=1)
    # the search space: structure x precision x runtime (tasks/compress/specs.py)
    structures: tuple[Literal["parent", "distilled", "pruned", "sparse"], ...] = Field(min_length=1)
    precisions: tuple[Literal["fp32", "bf16", "int8_dynamic", "int8_static", "fp16"], ...] = Field(
        min_length=1
    )
    runtimes: tuple[Literal["onnxruntime", "openvino"], ...] = Field(min_length=1)
    search_keep: int = Field(ge=1)
    objective: Literal["throughput", "latency"]
    calibration_rows: int = Field(ge=1)
    sparsity: float = Field(ge=0, lt=1)
    prune_finetune_steps: int = Field(ge=0)
    distill_layers: int = Field(ge=1)
    distill_temperature: float = Field(gt=0)
    distill_alpha: float = Field(ge=0, le=1)
    distill_epochs: float = Field(gt=0)
    distill_max_steps: int = Field(ge=0)  # 0: distill_epochs decide
    distill_eval_steps: int = Field(ge=1)
    accuracy_budget: float = Field(gt=0)  # a fraction of the parent's; > 1 only in tests
    max_recall_drop: float = Field(ge=0, le=1)
    num_threads: int = Field(ge=0)
    bench_rows: int = Field(ge=1)
    bench_rounds: int = Field(ge=1)


class GateParams(_Frozen):
    registered_model: str = Field(min_length=1)
    min_accuracy: float = Field(ge=0, le=1)
    min_macro_f1: float = Field(ge=0, le=1)
    alpha: float = Field(gt=0, lt=1)
    max_recall_drop: float = Field(ge=0, le=1)
    max_p95_latency_ms: float = Field(gt=0)
    max_size_mb: float = Field(gt=0)
    min_class_recall: float = Field(ge=0, le=1)
    latency_rows: int = Field(ge=1)
    smoke_timeout_s: float = Field(gt=0)
    smoke_texts: int = Field(ge=1)
    smoke_atol: float = Field(gt=0)


class ServeParams(_Frozen):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    max_texts: int = Field(ge=1)
    max_chars: int = Field(ge=1)
    timeout_s: int = Field(ge=1)
    max_batch_size: int = Field(ge=1)
    max_latency_ms: int = Field(ge=1)
    max_concurrency: int = Field(ge=1)
    workers: int = Field(ge=0)  # 0 = derived from the cores when packaged
    num_threads: int = Field(ge=0)  # 0 = derived from the cores when packaged
    max_header_bytes: int = Field(ge=1)
    cache_size: int = Field(ge=0)  # 0 = no result cache
    access_log: bool
    tracing: bool


class RetrainParams(_Frozen):
    cron: str = Field(pattern=r"^\S+( \S+){4}$")  # five fields: minute hour day month weekday
    deployment: str = Field(min_length=1)
    timezone: str

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. UTC)") from exc
        return value


class Params(_Frozen):
    """Every setting of the pipeline, validated and frozen."""

    base: BaseParams
    data: DataParams
    train: TrainParams
    compress: CompressParams
    gate: GateParams
    serve: ServeParams
    retrain: RetrainParams


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(map(str, loc))


def shape_problems(raw: dict[str, Any]) -> list[str]:
    """Every key absent from params.yaml and every section there that is no mapping.

    Checked before a profile is layered on: params.yaml holds every key, even one a profile
    overrides. A missing section is named once, not key by key.

    Args:
        raw: params.yaml as read.

    Returns:
        ``params.yaml: missing key 'train.epochs'``-style messages; [] when nothing is missing.
    """
    try:
        Params.model_validate(raw)
    except ValidationError as exc:
        return [
            f"{PARAMS_FILE}: {_SHAPE_ERRORS[e['type']].format(_dotted(e['loc']))}"
            for e in exc.errors()
            if e["type"] in _SHAPE_ERRORS
        ]
    return []


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
        ConfigError: listing every key missing from params.yaml; else every unknown key, type
            change and invalid value.
    """
    root = Path(root)
    raw = read_yaml(root / PARAMS_FILE)
    missing = shape_problems(raw)
    if missing:
        raise ConfigError(missing)
    name = profile or str(raw["base"]["profile"])
    if name != "default" and not _PROFILE_NAME.fullmatch(name):
        available = sorted(p.stem for p in (root / PROFILES_DIR).glob("*.yaml"))
        raise ConfigError(
            [
                f"profile '{name}' is not a profile name: a profile is the name of a file in "
                f"{PROFILES_DIR}/ (available: default, {', '.join(available)})"
            ]
        )
    problems: list[str] = []
    merged = raw
    if name != "default":
        prof_path = root / PROFILES_DIR / f"{name}.yaml"
        if not prof_path.exists():
            available = sorted(p.stem for p in (root / PROFILES_DIR).glob("*.yaml"))
            raise ConfigError([f"profile '{name}' not found (available: default, {available})"])
        prof = read_yaml(prof_path)
        problems += [f"{prof_path.name}: {p}" for p in check_profile(raw, prof)]
        merged = merge(merged, prof)
    if overrides:
        over = nest(overrides)
        problems += [f"override: {p}" for p in check_profile(raw, over)]
        merged = merge(merged, over)
    merged = merge(merged, {"base": {"profile": name}})
    data = merged["data"]  # a profile may have replaced the section: reported above
    source = data.get("source") if isinstance(data, dict) else None
    if isinstance(source, str):
        problems += [p for p in (source_location_problem(source, root),) if p]
    if problems:
        raise ConfigError(problems)
    try:
        return Params.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError([f"'{_dotted(e['loc'])}': {e['msg']}" for e in exc.errors()]) from exc


def set_params(root: Path | str, updates: dict[str, Any]) -> bool:
    """Write dotted-key updates into params.yaml, keeping its comments (like `dvc exp run -S`).

    The file is replaced atomically and only when a value actually changes, so DVC sees
    the same params and reruns nothing.

    Args:
        root: project directory holding params.yaml.
        updates: dotted keys and their new values; each key must exist, with the same type.

    Returns:
        True if the file changed.

    Raises:
        ConfigError: listing every unknown key and type change (nothing is written then).
    """
    from ruamel.yaml import YAML

    from tuneline.io import atomic_path  # here: tuneline.io imports pandas, which is slow

    path = Path(root) / PARAMS_FILE
    ryaml = YAML()
    ryaml.preserve_quotes = True
    doc = ryaml.load(path.read_text(encoding="utf-8"))
    base = read_yaml(path)
    problems = check_profile(base, nest(updates))
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
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
            ryaml.dump(doc, fh)
    return changed
