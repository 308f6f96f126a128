"""ECE, the temperature fit and the users' cases file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.behaviour.calibration import ece, fit_temperature, probabilities
from tasks.behaviour.cases import NO_CASES, load_cases
from tuneline.errors import ConfigError

pytestmark = pytest.mark.unit


def test_ece_zero_when_confidence_matches_accuracy_and_large_when_not() -> None:
    probs = np.array([[0.8, 0.2]] * 10)
    y = [0] * 8 + [1] * 2  # 80 % right at 80 % confidence
    assert ece(probs, y, 10) == pytest.approx(0.0)
    assert ece(probs, [1] * 10, 10) == pytest.approx(0.8)  # always wrong at 0.8
    assert ece(np.zeros((0, 2)), [], 10) == 0.0


def test_temperature_softens_an_overconfident_model_and_lowers_its_ece() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    right = rng.random(2000) < 0.75  # 75 % accurate ...
    pred = np.where(right, y, 1 - y)
    logits = np.zeros((2000, 2))
    logits[np.arange(2000), pred] = 6.0  # ... at ~99.8 % confidence
    t = fit_temperature(logits, y, 0.05, 20.0)
    assert t > 2.0
    before, after = ece(probabilities(logits, 1.0), y, 15), ece(probabilities(logits, t), y, 15)
    assert before > 0.2 and after < 0.05
    assert (probabilities(logits, t).argmax(1) == pred).all()  # labels unchanged


def test_temperature_stays_in_its_bounds() -> None:
    logits = np.array([[1.0, -1.0], [-1.0, 1.0]])  # all right: sharper is always better
    assert fit_temperature(logits, [0, 1], 0.5, 2.0) == pytest.approx(0.5, abs=1e-3)


def test_cases_file_read_and_every_problem_named(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "invariance:\n  - [a b, a  b]\ndirectional:\n  - {text: hi, add: ' win', label: spam}\n"
    )
    cases = load_cases(good)
    assert cases.invariance == (("a b", "a  b"),) and cases.directional[0].label == "spam"
    assert load_cases(None) == NO_CASES
    bad = tmp_path / "bad.yaml"
    bad.write_text("invariance:\n  - [only one]\ndirectional:\n  - {text: hi, label: spam}\n")
    with pytest.raises(ConfigError) as err:
        load_cases(bad)
    assert "invariance[0]" in str(err.value) and "directional[0]" in str(err.value)
    with pytest.raises(ConfigError, match="does not exist"):
        load_cases(tmp_path / "missing.yaml")


def test_cases_written_for_other_labels_are_skipped_not_failed(tmp_path: Path) -> None:
    """The shipped SMS cases on a TREC model: every pair skipped (a question classifier
    flipped 'r u coming home' and the gate refused it on cases that were not its own)."""
    from types import SimpleNamespace

    from tasks.behaviour.suite import user_cases
    from tests.params import params

    path = tmp_path / "cases.yaml"
    path.write_text(
        "labels: [ham, spam]\ninvariance:\n  - [a b, c d]\n"
        "directional:\n  - {text: hi, add: ' win', label: spam}\n"
    )
    cases = load_cases(path)
    assert cases.labels == ("ham", "spam")

    class Flipper:  # labels every first text of a pair differently from the second
        def __init__(self, labels: list[str]) -> None:
            self.labels = labels

        def predict(self, texts: list[str]) -> list[SimpleNamespace]:
            return [SimpleNamespace(label=self.labels[t == "c d"]) for t in texts]

        def predict_proba(self, texts: list[str]) -> np.ndarray:
            return np.tile([0.5, 0.5], (len(texts), 1))

    p = params("smoke")
    other = user_cases(Flipper(["ABBR", "DESC"]), cases, p)  # type: ignore[arg-type]
    assert other["invariance"] == {"rate": 1.0, "rows": 0, "skipped": 1, "failed": []}
    assert other["directional"]["skipped"] == 1 and "ham" in other["skipped_because"]
    own = user_cases(Flipper(["ham", "spam"]), cases, p)  # type: ignore[arg-type]
    assert own["invariance"]["rate"] == 0.0 and own["invariance"]["rows"] == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels: spam\n")
    with pytest.raises(ConfigError, match="labels: expected a list"):
        load_cases(bad)
