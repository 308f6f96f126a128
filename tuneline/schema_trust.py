"""The params.yaml sections of the trust checks: the behavioural suite and calibration
(`behaviour:`) and the hyperparameter search (`tune:`); part of tuneline/schema.py's Params.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BehaviourParams(_Frozen):
    rows: int = Field(ge=1)  # test texts each perturbation is applied to
    typos: int = Field(ge=1)  # character swaps/drops per text
    neutral_tokens: tuple[str, ...] = Field(min_length=1)
    cases: str  # users' cases YAML, relative to the project; "" = none
    max_flipped: int = Field(ge=0)  # flipped examples recorded per perturbation
    directional_tolerance: float = Field(ge=0, le=1)
    calibration_bins: int = Field(ge=2)
    min_temperature: float = Field(gt=0)
    max_temperature: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> BehaviourParams:
        if self.min_temperature > self.max_temperature:
            raise ValueError("behaviour.min_temperature must be <= behaviour.max_temperature")
        return self


class TuneParams(_Frozen):
    """`tuneline tune`: the Optuna search space (low, high) and its pruner."""

    trials: int = Field(ge=1)
    study: str = Field(min_length=1)
    learning_rate: tuple[float, float]  # searched on a log scale
    epochs: tuple[float, float]
    batch_size: tuple[int, ...] = Field(min_length=1)  # choices
    warmup_ratio: tuple[float, float]
    weight_decay: tuple[float, float]
    pruner_startup_trials: int = Field(ge=0)  # trials never pruned (the median needs some)
    pruner_warmup_steps: int = Field(ge=0)  # training steps before a trial can be pruned

    @model_validator(mode="after")
    def _ranges(self) -> TuneParams:
        bad = [
            name
            for name in ("learning_rate", "epochs", "warmup_ratio", "weight_decay")
            if not 0 <= getattr(self, name)[0] <= getattr(self, name)[1]
        ]
        if self.learning_rate[0] <= 0:
            bad.append("learning_rate (must be > 0)")
        if min(self.batch_size) < 1:
            bad.append("batch_size (must be >= 1)")
        if bad:
            raise ValueError(f"tune ranges need 0 <= low <= high: {', '.join(bad)}")
        return self
