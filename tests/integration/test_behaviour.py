"""The behavioural suite and calibration on real exported candidates (smoke profile): a tiny
BERT trained on the synthetic labels passes the gate's behaviour and calibration rules, the
same model trained on shuffled labels fails them, each failure named."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tasks.behaviour.cases import load_cases
from tasks.behaviour.suite import check_candidate
from tasks.release.trust import trust_checks, trust_figures
from tests.synthetic import LABELS, synthetic_rows, train_briefly
from tuneline.config import Params, load_params

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(ROOT, "smoke")


def _candidate(root: Path, params: Params, name: str, shuffle: bool) -> Path:
    """A tiny BERT trained briefly (on shuffled training labels if `shuffle`), exported to
    a fused FP32 ONNX variant as the compression search exports its candidates."""
    import torch

    from tasks.compress.export import export_fp32
    from tuneline.models import build_tiny_bert

    torch.set_num_threads(1)
    train = synthetic_rows(240, 1, 12)
    y = train["label"].tolist()
    if shuffle:
        random.Random(0).shuffle(y)
    model, tokenizer = build_tiny_bert(train["text"].tolist(), LABELS, params.train)
    train_briefly(model, tokenizer, train["text"].tolist(), y, steps=60)
    target = root / name
    export_fp32(
        model,
        tokenizer,
        LABELS,
        target,
        opset=params.compress.opset,
        max_seq_len=params.train.max_seq_len,
        work_dir=root / ".work",
    )
    return target


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory, params: Params) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("behaviour")
    split = lambda seed: synthetic_rows(80, seed, 12)  # noqa: E731
    val, test = split(2), split(3)
    cases_file = root / "cases.yaml"  # the synthetic classes' vocabulary (tests/synthetic.py)
    cases_file.write_text(
        "invariance:\n"
        "  - [meeting lunch tomorrow office, meeting lunch tomorrow office!]\n"
        "directional:\n"
        "  - {text: team report schedule, add: ' win prize cash claim now', label: spam}\n"
        "  - {text: win prize free, add: ' family dinner mom tonight', label: ham}\n"
        "  - {text: anything, add: ' at all', label: not-a-label}\n"  # skipped, not an error
    )
    cases = load_cases(cases_file)
    out = {}
    for name, shuffle in (("normal", False), ("shuffled", True)):
        target = _candidate(root, params, name, shuffle)
        check_candidate(
            target,
            (val["text"].tolist(), val["label"].tolist()),
            (test["text"].tolist(), test["label"].tolist()),
            params,
            cases,
        )
        out[name] = target
    return out


def test_normal_candidate_passes_behaviour_and_calibration(
    checked: dict[str, Path], params: Params
) -> None:
    figures = trust_figures(checked["normal"])
    checks = trust_checks(figures, None, params.gate)
    print("\n".join(reason for _, reason in checks))
    assert all(ok for ok, _ in checks), [reason for ok, reason in checks if not ok]
    info = json.loads((checked["normal"] / "variant.json").read_text())
    assert set(info["behaviour"]["perturbations"]) == {
        "typo", "case", "punctuation", "whitespace", "neutral"
    }  # fmt: skip
    assert info["temperature"] == pytest.approx(info["calibration"]["temperature"])
    assert info["behaviour"]["user"]["directional"]["rows"] == 2
    assert info["behaviour"]["user"]["directional"]["skipped"] == 1
    assert (checked["normal"] / "reliability.png").stat().st_size > 1000


def test_shuffled_labels_fail_behaviour_and_calibration(
    checked: dict[str, Path], params: Params
) -> None:
    figures = trust_figures(checked["shuffled"])
    print(figures)
    checks = trust_checks(figures, trust_figures(checked["normal"]), params.gate)
    failed = [reason for ok, reason in checks if not ok]
    print("\n".join(failed))
    assert any(r.startswith("behaviour: invariance") for r in failed), failed
    assert any(r.startswith("calibration: ECE") for r in failed), failed
    info = json.loads((checked["shuffled"] / "variant.json").read_text())
    flipped = [p for p in info["behaviour"]["perturbations"].values() if p["flipped"]]
    assert flipped and all(p["examples"] for p in flipped)  # the flips are recorded, with texts
