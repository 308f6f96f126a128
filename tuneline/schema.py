"""The schema of params.yaml: one frozen pydantic model per section, every field bounded
where a bound exists, none with a default (tuneline/config.py loads and checks the file).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuneline.schema_trust import BehaviourParams, TuneParams

Severity = Literal["error", "warning"]
AUTO_SEQ_LEN = 0  # train.max_seq_len: auto, resolved from the training split before training


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BaseParams(_Frozen):
    seed: int = Field(ge=0)
    profile: str
    progress_seconds: float = Field(gt=0)  # console progress lines when not a terminal


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
    # "auto" (read as AUTO_SEQ_LEN, 0): a percentile of the training split's token lengths,
    # capped at the model's limit (tasks/finetune/seqlen.py); else the length itself (>= 8)
    max_seq_len: int = Field(ge=0)
    seq_len_percentile: float = Field(gt=0, le=100)
    truncation: Literal["head", "head_tail"]  # head_tail keeps the start and the end
    truncation_head_share: float = Field(gt=0, lt=1)  # of the kept tokens, from the start
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

    @field_validator("max_seq_len", mode="before")
    @classmethod
    def _auto_len(cls, value: object) -> object:
        if value == "auto":
            return AUTO_SEQ_LEN
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 8:
            raise ValueError("train.max_seq_len must be 'auto' or at least 8")
        return value


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
    skip_dominated: bool  # a structure with more weights than a student that held the target
    objective: Literal["throughput", "latency"]
    calibration_rows: int = Field(ge=1)
    sparsity: float = Field(ge=0, lt=1)
    prune_finetune_steps: int = Field(ge=0)
    distill_layers: int = Field(ge=1)  # the first student's depth...
    distill_min_layers: int = Field(ge=1)  # ...then one layer fewer while the last held the target
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

    @model_validator(mode="after")
    def _depths(self) -> CompressParams:
        if self.distill_min_layers > self.distill_layers:
            raise ValueError(
                f"distill_min_layers {self.distill_min_layers} > distill_layers "
                f"{self.distill_layers}: the search starts at distill_layers and shrinks"
            )
        return self


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
    # behaviour and calibration (tasks/behaviour, tasks/release/trust.py)
    min_invariance: float = Field(ge=0, le=1)  # floor on every invariance rate
    max_invariance_drop: float = Field(ge=0, le=1)  # vs the champion's, per rate
    min_directional: float = Field(ge=0, le=1)  # share of the users' directional cases held
    max_ece: float = Field(ge=0, le=1)  # test ECE as served (fitted temperature)
    allow_manual_champion: bool  # False: a hand-set @champion without a passing gate is undone
    webhook_port: int = Field(ge=1, le=65535)
    watch_interval_s: float = Field(gt=0, le=3600)


class ServeParams(_Frozen):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    follow_poll_s: float = Field(gt=0, le=3600)
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
    bulk_max_texts: int = Field(ge=1)
    bulk_max_bytes: int = Field(ge=1)


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
    behaviour: BehaviourParams
    tune: TuneParams
    serve: ServeParams
    retrain: RetrainParams
