"""The behavioural and calibration check of one candidate, through the runtime that serves it.

`check_candidate` fits the temperature on the validation split and writes it into the
variant's variant.json (so the predictor serves calibrated probabilities from then on), then
measures, on the test split: ECE before and after the temperature (reliability.png beside
model.onnx), the invariance rate under each perturbation (tasks/behaviour/perturb.py) with
the examples that flipped, and the users' cases (tasks/behaviour/cases.py).

Flat figures (the candidate's scores, so MLflow child-run metrics and variant.json
"metrics"): invariance_<perturbation>, invariance_user, directional_user, ece_uncalibrated,
ece, temperature. The details go to variant.json "behaviour" and "calibration".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serving.predictor import VARIANT_FILE, OnnxTextClassifier
from tasks.behaviour.calibration import (
    ece,
    fit_temperature,
    probabilities,
    reliability_diagram,
)
from tasks.behaviour.cases import Cases, load_cases
from tasks.behaviour.perturb import PERTURBATIONS, perturb
from tuneline.config import Params
from tuneline.io import write_json
from tuneline.processes import machine_cores

RELIABILITY_FILE = "reliability.png"
Split = tuple[Sequence[str], Sequence[int]]


def invariance(
    clf: OnnxTextClassifier, texts: Sequence[str], seed: int, params: Params
) -> dict[str, dict[str, Any]]:
    """Per perturbation: the share of changed texts whose label stayed, and what flipped.

    A text the perturbation leaves as it was is not counted (it cannot flip).

    Returns:
        name -> {"rate", "rows" (changed texts), "flipped" (count), "examples" (up to
        behaviour.max_flipped: text, perturbed, before, after)}.
    """
    bp, batch = params.behaviour, params.serve.max_batch_size
    before = clf.logits(list(texts), batch_size=batch).argmax(-1)
    out: dict[str, dict[str, Any]] = {}
    for name in PERTURBATIONS:
        changed = perturb(name, texts, seed, bp)
        rows = [i for i, (a, b) in enumerate(zip(texts, changed, strict=True)) if a != b]
        after = clf.logits([changed[i] for i in rows], batch_size=batch).argmax(-1)
        flips = [i for i, label in zip(rows, after, strict=True) if label != before[i]]
        out[name] = {
            "rate": 1.0 - len(flips) / len(rows) if rows else 1.0,
            "rows": len(rows),
            "flipped": len(flips),
            "examples": [
                {
                    "text": texts[i],
                    "perturbed": changed[i],
                    "before": clf.labels[int(before[i])],
                    "after": clf.labels[int(clf.logits([changed[i]]).argmax(-1)[0])],
                }
                for i in flips[: bp.max_flipped]
            ],
        }
    return out


def user_cases(clf: OnnxTextClassifier, cases: Cases, params: Params) -> dict[str, Any]:
    """The users' invariance pairs and directional expectations, each failure named.

    Returns:
        {"invariance": {"rate", "rows", "failed": [...]}, "directional": {"rate", "rows",
        "skipped", "failed": [...]}} (a rate of 1.0 over no rows).
    """
    if not cases.applies_to(clf.labels):  # written for another corpus's labels
        pairs, dirs = len(cases.invariance), len(cases.directional)
        return {
            "invariance": {"rate": 1.0, "rows": 0, "skipped": pairs, "failed": []},
            "directional": {"rate": 1.0, "rows": 0, "skipped": dirs, "failed": []},
            "skipped_because": f"cases written for labels {list(cases.labels)}",
        }
    failed_pairs = []
    if cases.invariance:
        a = clf.predict([p[0] for p in cases.invariance])
        b = clf.predict([p[1] for p in cases.invariance])
        failed_pairs = [
            {"texts": list(pair), "labels": [x.label, y.label]}
            for pair, x, y in zip(cases.invariance, a, b, strict=True)
            if x.label != y.label
        ]
    known = [c for c in cases.directional if c.label in clf.labels]
    failed_dir = []
    if known:
        base = clf.predict_proba([c.text for c in known])
        added = clf.predict_proba([c.text + c.add for c in known])
        for i, c in enumerate(known):
            k = clf.labels.index(c.label)
            if added[i, k] < base[i, k] - params.behaviour.directional_tolerance:
                failed_dir.append(
                    {
                        "text": c.text,
                        "add": c.add,
                        "label": c.label,
                        "before": float(base[i, k]),
                        "after": float(added[i, k]),
                    }
                )
    n_pairs, n_dir = len(cases.invariance), len(known)
    return {
        "invariance": {
            "rate": 1.0 - len(failed_pairs) / n_pairs if n_pairs else 1.0,
            "rows": n_pairs,
            "skipped": 0,
            "failed": failed_pairs,
        },
        "directional": {
            "rate": 1.0 - len(failed_dir) / n_dir if n_dir else 1.0,
            "rows": n_dir,
            "skipped": len(cases.directional) - n_dir,
            "failed": failed_dir,
        },
    }


def calibrate(
    variant_dir: Path, clf: OnnxTextClassifier, val: Split, test: Split, params: Params
) -> dict[str, float]:
    """Fit the temperature on `val`, write it into variant.json, measure ECE on `test`.

    Returns:
        {"temperature", "ece_uncalibrated" (test, T = 1), "ece" (test, fitted T),
        "ece_val_uncalibrated", "ece_val"}.
    """
    bp, batch = params.behaviour, params.serve.max_batch_size
    val_logits = clf.logits(list(val[0]), batch_size=batch)
    test_logits = clf.logits(list(test[0]), batch_size=batch)
    t = fit_temperature(val_logits, val[1], bp.min_temperature, bp.max_temperature)
    before, after = probabilities(test_logits, 1.0), probabilities(test_logits, t)
    figures = {
        "temperature": t,
        "ece_uncalibrated": ece(before, test[1], bp.calibration_bins),
        "ece": ece(after, test[1], bp.calibration_bins),
        "ece_val_uncalibrated": ece(probabilities(val_logits, 1.0), val[1], bp.calibration_bins),
        "ece_val": ece(probabilities(val_logits, t), val[1], bp.calibration_bins),
    }
    reliability_diagram(
        before,
        after,
        test[1],
        bp.calibration_bins,
        variant_dir / RELIABILITY_FILE,
        f"{variant_dir.name}: T = {t:.2f}",
    )
    return figures


def check_candidate(
    variant_dir: Path, val: Split, test: Split, params: Params, cases: Cases
) -> dict[str, float]:
    """Calibrate one candidate and run its behavioural suite; record both in variant.json.

    Args:
        variant_dir: the candidate's variant directory (model.onnx, variant.json, ...).
        val: the validation split (texts, class ids): the temperature is fitted on it.
        test: the test split: ECE on all of it, the perturbations on its first
            behaviour.rows texts.
        params: settings (behaviour, base.seed, serve.max_batch_size).
        cases: the users' cases.

    Returns:
        The flat figures (see the module docstring).
    """
    cores = machine_cores()  # figures, not timings: every core
    clf = OnnxTextClassifier(variant_dir, num_threads=cores)
    calibration = calibrate(variant_dir, clf, val, test, params)
    info = json.loads((variant_dir / VARIANT_FILE).read_text("utf-8"))
    write_json(
        variant_dir / VARIANT_FILE,
        {**info, "temperature": calibration["temperature"], "calibration": calibration},
    )
    clf = OnnxTextClassifier(variant_dir, num_threads=cores)  # as served: calibrated
    rates = invariance(clf, list(test[0][: params.behaviour.rows]), params.base.seed, params)
    users = user_cases(clf, cases, params)
    figures = {
        **{f"invariance_{name}": float(r["rate"]) for name, r in rates.items()},
        "invariance_user": float(users["invariance"]["rate"]),
        "directional_user": float(users["directional"]["rate"]),
        **{k: float(v) for k, v in calibration.items()},
    }
    info = json.loads((variant_dir / VARIANT_FILE).read_text("utf-8"))
    write_json(
        variant_dir / VARIANT_FILE,
        {
            **info,
            "behaviour": {"perturbations": rates, "user": users},
            "metrics": {**info.get("metrics", {}), **figures},
        },
    )
    return figures


def check_candidates(
    variant_dirs: Sequence[Path], prepared_dir: Path, params: Params
) -> list[dict[str, float]]:
    """`check_candidate` for every candidate, on the prepared val and test splits.

    Args:
        variant_dirs: the candidates' variant directories.
        prepared_dir: data/prepared of the project (behaviour.cases is read relative to the
            project, two levels up).
        params: settings.

    Returns:
        Each candidate's flat figures, in order.

    Raises:
        ConfigError: the users' cases file is missing or malformed.
    """
    import pandas as pd

    cases_file = params.behaviour.cases
    cases = load_cases(prepared_dir.parent.parent / cases_file if cases_file else None)
    splits = {}
    for name in ("val", "test"):
        df = pd.read_parquet(prepared_dir / f"{name}.parquet", columns=["text", "label"])
        splits[name] = (df["text"].astype(str).tolist(), [int(v) for v in df["label"]])
    return [check_candidate(d, splits["val"], splits["test"], params, cases) for d in variant_dirs]
