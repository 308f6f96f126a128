"""`tuneline tune`: an Optuna study over the fine-tune knobs, each trial a real fine-tune.

Every trial is the pipeline's own fine-tune task (tasks/finetune/task.py) with the trial's
learning rate, epochs, batch size, warmup and weight decay (ranges in params `tune:`), its
MLflow run a child of the study's run. Its objective is the best validation macro-F1 it
reached; a median pruner watches the same metric as the trial trains (tasks/tune/monitor.py)
and stops the ones that fall behind. The study lives in Optuna storage (the settings'
`study_storage`: SQLite under the state dir unless TUNELINE_OPTUNA_STORAGE names another,
e.g. the server stack's PostgreSQL), so a second `tuneline tune` adds trials to it. The test
split is scored by each fine-tune as usual but never chooses anything.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.finetune.task import EXPERIMENT, finetune_classifier
from tasks.tune.monitor import MLFLOW_PARENT_TAG, TrialMonitor
from tuneline import registry
from tuneline.config import Params, load_params
from tuneline.errors import TrainingError
from tuneline.io import md5_file, write_json
from tuneline.lineage import PREPARED
from tuneline.settings import get_settings
from tuneline.summary import TUNE_RECORD

KNOBS = ("learning_rate", "epochs", "batch_size", "warmup_ratio", "weight_decay")
POLL_S = 2.0


@dataclass(frozen=True)
class TuneResult:
    """The study, its MLflow run, every trial's outcome and the best values found."""

    study: str
    storage: str
    run_id: str
    trials: tuple[dict[str, Any], ...]  # number, state, value, params, run_id
    best_value: float | None
    best: dict[str, float | int]  # train.<knob> -> value ({} when no trial completed)
    baseline: float | None  # the best value of a trial at the current params.yaml values


def suggest(trial: Any, params: Params) -> dict[str, float | int]:
    """The trial's values for the five knobs, drawn from `params.tune`'s ranges."""
    tp = params.tune
    return {
        "learning_rate": trial.suggest_float("learning_rate", *tp.learning_rate, log=True),
        "epochs": trial.suggest_float("epochs", *tp.epochs),
        "batch_size": trial.suggest_categorical("batch_size", list(tp.batch_size)),
        "warmup_ratio": trial.suggest_float("warmup_ratio", *tp.warmup_ratio),
        "weight_decay": trial.suggest_float("weight_decay", *tp.weight_decay),
    }


def study_name(root: Path, params: Params) -> str:
    """One study per (name, profile, training + validation data): trials stay comparable."""
    data = "".join(md5_file(root / PREPARED / f"{s}.parquet")[:6] for s in ("train", "val"))
    return f"{params.tune.study}-{params.base.profile}-{data}"


def run_study(root: Path, params: Params, trials: int, *, enqueue_current: bool) -> TuneResult:
    """Run `trials` more trials of the project's study and return its best values.

    Args:
        root: the project (its prepared splits must exist).
        params: settings (profile applied); `tune` holds the space, `train` the rest.
        trials: how many trials to add.
        enqueue_current: make the first trial the current params.yaml values (the baseline
            the study must beat), when the study has no trial yet.

    Returns:
        The TuneResult.
    """
    import optuna
    from mlflow.tracking import MlflowClient

    settings = get_settings()
    settings.root.mkdir(parents=True, exist_ok=True)
    storage, name = settings.study_storage, study_name(root, params)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=params.base.seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=params.tune.pruner_startup_trials,
            n_warmup_steps=params.tune.pruner_warmup_steps,
        ),
    )
    if enqueue_current and not study.trials:
        study.enqueue_trial({k: getattr(params.train, k) for k in KNOBS}, skip_if_exists=True)
    client = MlflowClient(settings.tracking_uri)
    parent = client.create_run(
        registry.experiment_id(EXPERIMENT),
        run_name=f"tune {name}",
        tags={"step": "tune", "tune.study": name, "tune.storage": _redact(storage)},
    ).info.run_id
    started = time.perf_counter()
    outcomes: list[dict[str, Any]] = []
    try:
        with warnings.catch_warnings():
            # the baseline trial holds the current values, which may lie outside a range on
            # purpose (epochs 0 = auto): Optuna's "out of range" warning is expected there
            warnings.filterwarnings("ignore", "Fixed parameter .* out of range", UserWarning)
            study.optimize(
                lambda t: _objective(t, root, params, client, parent, outcomes),
                n_trials=trials,
                catch=(),
            )
        best_value, best = _best(study)
        _log_parent(client, parent, study, best_value, best, time.perf_counter() - started)
    except BaseException:
        client.set_terminated(parent, "FAILED")
        raise
    client.set_terminated(parent, "FINISHED")
    baseline = next((t.value for t in study.trials if t.number == 0 and t.value is not None), None)
    if best_value is not None:  # the summary screen's "tuning" line (tuneline/summary.py)
        record = {
            "study": name,
            "trials": len(study.trials),
            "best_value": best_value,
            "baseline": baseline,
            "best": best,
            "run_id": parent,
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        write_json(settings.root / TUNE_RECORD, record)
    return TuneResult(name, _redact(storage), parent, tuple(outcomes), best_value, best, baseline)


def _objective(
    trial: Any,
    root: Path,
    params: Params,
    client: Any,
    parent: str,
    outcomes: list[dict[str, Any]],
) -> float:
    import optuna

    values = suggest(trial, params)
    overrides = {f"train.{k}": v for k, v in values.items()}
    trial_params = load_params(root, params.base.profile, overrides=overrides)
    out = get_settings().runs_dir / "tune" / study_name(root, params) / f"trial-{trial.number}"
    out = out.resolve()
    tags = {MLFLOW_PARENT_TAG: parent, "tune.trial": str(trial.number), "step": "tune-trial"}
    monitor = TrialMonitor(trial, out, client, tags, POLL_S)
    monitor.start()
    outcome: dict[str, Any] = {"number": trial.number, "params": values}
    try:
        finetune_classifier.fn(root / PREPARED, trial_params, output_dir=out, project_root=root)
    except TrainingError:
        if monitor.pruned_at is None:  # a real failure, not our stop
            raise
        state = {"state": "pruned", "value": monitor.best(), "pruned_at": monitor.pruned_at}
        outcomes.append({**outcome, **state, "run_id": monitor.run_id})
        if monitor.run_id:
            client.set_tag(monitor.run_id, "tune.state", "pruned")
        why = f"val macro-F1 behind the median at step {monitor.pruned_at}"
        raise optuna.TrialPruned(why) from None
    finally:
        monitor.stop()
    value = monitor.best()
    if value is None:
        raise TrainingError(f"trial {trial.number}: no validation macro-F1 was logged")
    client.set_tag(str(monitor.run_id), "tune.state", "complete")
    outcomes.append({**outcome, "state": "complete", "run_id": monitor.run_id, "value": value})
    return value


def _best(study: Any) -> tuple[float | None, dict[str, float | int]]:
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return None, {}
    best = max(done, key=lambda t: t.value)
    return float(best.value), {f"train.{k}": _rounded(best.params[k]) for k in KNOBS}


def _rounded(value: float | int) -> float | int:
    """4 significant digits: params.yaml stays readable; the tuned effect does not hinge on more."""
    return value if isinstance(value, int) else float(f"{value:.4g}")


def _log_parent(
    client: Any,
    parent: str,
    study: Any,
    best_value: float | None,
    best: dict[str, float | int],
    wall_s: float,
) -> None:
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    metrics = [
        Metric("tune_trials", float(len(study.trials)), now, 0),
        Metric("tune_wall_s", wall_s, now, 0),
    ]
    if best_value is not None:
        metrics.append(Metric("best_val_macro_f1", best_value, now, 0))
    client.log_batch(
        parent, metrics=metrics, params=[Param(f"best.{k}", str(v)) for k, v in best.items()]
    )


def _redact(uri: str) -> str:
    """A storage URL without its password (it goes into tags and the console)."""
    if "@" not in uri or "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
