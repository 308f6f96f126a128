"""The few named errors tuneline raises. Each carries every finding, not just the first."""

from __future__ import annotations


class TunelineError(Exception):
    """Base class: an error whose message is meant for the user, not a traceback."""


class ConfigError(TunelineError):
    """params.yaml or a profile is invalid; the message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n  - " + "\n  - ".join(problems))


class IngestError(TunelineError):
    """The dataset could not be fetched, verified or read."""


class DataValidationError(TunelineError):
    """The data failed validation; `failures` names every failed check."""

    def __init__(self, failures: list[str], report_path: str | None = None) -> None:
        self.failures = failures
        self.report_path = report_path
        msg = "data validation failed:\n  - " + "\n  - ".join(failures)
        if report_path:
            msg += f"\nreport: {report_path}"
        super().__init__(msg)


class TrainingError(TunelineError):
    """Fine-tuning could not run or finish."""


class ParityError(TunelineError):
    """An exported model disagrees with its PyTorch source beyond the thresholds."""


class PromotionRefused(TunelineError):
    """The gate refused the candidate; `reasons` lists why."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("promotion refused:\n  - " + "\n  - ".join(reasons))


class UnsafeArtifactError(TunelineError):
    """A model file or config would execute code (pickle, remote code) and was refused."""


class CompressionError(ParityError):
    """No compressed candidate passed parity and the budget; `reasons` lists each one's."""

    def __init__(self, summary: str, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__(f"{summary}:\n  - " + "\n  - ".join(reasons))


class StackError(TunelineError):
    """A server of the stack (`tuneline up --stack server`) cannot be installed, started or
    reached, or a store it serves (S3, PostgreSQL) failed a call."""
