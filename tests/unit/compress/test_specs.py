"""The search space (tasks/compress/specs.py): structures x (precision, runtime) pairs, each
named once, filtered by the params and by what this machine can run, and each pair judged by
the parity thresholds of its precision."""

from __future__ import annotations

from itertools import combinations
from typing import Any, get_args

import pytest

from tasks.compress.specs import (
    PAIRS,
    PARENT,
    STRUCTURES,
    Pair,
    candidate_name,
    enabled_pairs,
    enabled_structures,
    parity_thresholds,
)
from tests.params import params
from tuneline.config import CompressParams

pytestmark = pytest.mark.unit

EVERYTHING = {"onnxruntime", "openvino", "bf16", "cuda"}  # a machine that runs every pair


def allowed(field: str) -> set[str]:
    """The values CompressParams accepts in a tuple[Literal[...], ...] field."""
    literal = get_args(CompressParams.model_fields[field].annotation)[0]
    return set(get_args(literal))


def compress(**keys: Any) -> CompressParams:
    return params("smoke", **{f"compress.{k}": v for k, v in keys.items()}).compress


def all_on(**keys: Any) -> CompressParams:
    """Every structure, precision and runtime enabled, then `keys` overridden."""
    wide = {
        "structures": sorted(allowed("structures")),
        "precisions": sorted(allowed("precisions")),
        "runtimes": sorted(allowed("runtimes")),
    }
    return compress(**{**wide, **keys})


def keys(pairs: list[Pair]) -> list[str]:
    return [pair.key for pair in pairs]


def test_every_structure_and_pair_is_named_once_and_covers_the_params():
    names = [row.name for row in STRUCTURES]
    assert names[0] == PARENT
    assert len(names) == len(set(names))
    assert set(names) == allowed("structures")
    assert len(keys(list(PAIRS))) == len(set(keys(list(PAIRS))))
    assert {pair.precision for pair in PAIRS} == allowed("precisions")
    assert {pair.runtime for pair in PAIRS} == allowed("runtimes")
    everyone = [candidate_name(row.name, pair) for row in STRUCTURES for pair in PAIRS]
    assert len(everyone) == len(set(everyone))


def test_a_pair_is_named_by_precision_and_short_runtime():
    by_key = {pair.key: pair for pair in PAIRS}
    assert by_key["bf16_ov"].runtime == "openvino"
    assert by_key["int8_dynamic_ort"].runtime == "onnxruntime"
    assert candidate_name("distilled", by_key["int8_static_ov"]) == "distilled_int8_static_ov"


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (["parent"], ["parent"]),
        (["pruned", "distilled"], ["parent", "distilled", "pruned"]),
        (["sparse"], ["parent", "sparse"]),
        (["sparse", "parent", "distilled"], ["parent", "distilled", "sparse"]),
    ],
)
def test_enabled_structures_put_the_parent_first_even_when_omitted(wanted, expected):
    assert [row.name for row in enabled_structures(compress(structures=wanted))] == expected


def test_enabled_pairs_follow_the_precisions_and_runtimes():
    pairs, skipped = enabled_pairs(all_on(), EVERYTHING)
    assert pairs == list(PAIRS) and skipped == {}
    cp = all_on(precisions=["fp32"], runtimes=["onnxruntime"])
    assert enabled_pairs(cp, EVERYTHING) == ([p for p in PAIRS if p.key == "fp32_ort"], {})
    cp = all_on(precisions=["int8_static", "bf16"], runtimes=["openvino"])
    assert keys(enabled_pairs(cp, EVERYTHING)[0]) == ["bf16_ov", "int8_static_ov"]


@pytest.mark.parametrize(
    ("lacks", "gone", "named"),
    [
        ("bf16", {"bf16_ov"}, "BF16"),
        ("cuda", {"fp16_ort"}, "CUDA"),
        ("openvino", {p.key for p in PAIRS if p.runtime == "openvino"}, "not installed"),
    ],
)
def test_what_the_machine_lacks_is_skipped_with_its_reason(lacks, gone, named):
    pairs, skipped = enabled_pairs(all_on(), EVERYTHING - {lacks})
    assert set(skipped) == gone
    assert all(why.startswith("skipped:") and named in why for why in skipped.values())
    assert keys(pairs) == [p.key for p in PAIRS if p.key not in gone]  # table order kept


def test_openvino_missing_outranks_bf16_present_and_unasked_pairs_are_not_skipped():
    pairs, skipped = enabled_pairs(all_on(precisions=["fp32", "bf16"]), {"onnxruntime", "bf16"})
    assert keys(pairs) == ["fp32_ort"]
    assert set(skipped) == {"fp32_ov", "bf16_ov"}
    assert "openvino is not installed" in skipped["bf16_ov"]
    # fp16 not asked for: nothing to build and nothing to explain on a machine without CUDA
    no_fp16 = sorted(allowed("precisions") - {"fp16"})
    assert enabled_pairs(all_on(precisions=no_fp16), EVERYTHING - {"cuda"})[1] == {}


def test_fp32_pairs_get_the_fp32_thresholds_and_reduced_ones_the_quant_ones():
    cp = compress(
        parity_max_abs_logit=0.001,
        parity_min_agreement=0.999,
        quant_parity_max_abs_logit=3.0,
        quant_parity_min_agreement=0.97,
    )
    strict = {"max_abs_logit": 0.001, "min_agreement": 0.999}
    loose = {"max_abs_logit": 3.0, "min_agreement": 0.97}
    for pair in PAIRS:
        assert pair.reduced == (pair.precision != "fp32"), pair.key
        expected = loose if pair.precision != "fp32" else strict
        assert parity_thresholds(cp, pair.reduced) == expected, pair.key


def test_pairs_share_a_transform_key_exactly_when_they_share_a_transform():
    for p, q in combinations(PAIRS, 2):
        same = p.transform is q.transform
        assert (p.transform_key() == q.transform_key()) == same, (p.key, q.key)
    # OpenVINO's BF16 reads the FP32 file; its INT8 runs the same QDQ file as ORT's
    assert {p.key for p in PAIRS if p.transform_key() == "fp32"} == {
        "fp32_ort",
        "fp32_ov",
        "bf16_ov",
    }
    assert {p.key for p in PAIRS if p.transform_key() == "int8_static"} == {
        "int8_static_ort",
        "int8_static_ov",
    }


def test_only_the_cuda_pair_runs_on_the_gpu():
    assert [p.key for p in PAIRS if p.use_gpu] == ["fp16_ort"]


@pytest.mark.parametrize(
    ("start", "floor", "reaching", "kept", "tried"),
    [
        (3, 1, {3, 2, 1}, 1, [3, 2, 1]),  # every depth holds: the shallowest
        (3, 1, {3, 2}, 2, [3, 2, 1]),  # 1 layer misses: one miss, then stop
        (3, 1, set(), 3, [3]),  # the first misses: nothing shallower is tried
        (3, 2, {3, 2, 1}, 2, [3, 2]),  # never below distill_min_layers
    ],
)
def test_distilled_keeps_the_shallowest_student_that_holds_the_target(
    monkeypatch: pytest.MonkeyPatch,
    start: int,
    floor: int,
    reaching: set[int],
    kept: int,
    tried: list[int],
) -> None:
    """The depth search (the KD itself is tests/unit/compress/test_distill.py): a student
    that misses ends it, so at most one distillation is spent on a miss."""
    from types import SimpleNamespace

    from tasks.compress import specs

    calls: list[int] = []

    def kd(ctx: Any, layers: int) -> tuple[str, dict[str, Any]]:
        calls.append(layers)
        stopped = "target" if layers in reaching else "max_steps"
        return f"student-{layers}", {"stopped": stopped, "val_accuracy": 0.9, "steps": 50}

    monkeypatch.setattr(specs, "_kd", kd)
    p = params("smoke", **{"compress.distill_layers": start, "compress.distill_min_layers": floor})
    student, settings = specs._distilled(SimpleNamespace(params=p))  # type: ignore[arg-type]
    assert (student, settings["distill_layers"], calls) == (f"student-{kept}", kept, tried)
    assert settings["distill_tried"].split() == [f"{n}:0.9000" for n in tried]


def test_min_layers_above_the_start_is_refused() -> None:
    from tuneline.errors import ConfigError

    with pytest.raises(ConfigError, match="distill_min_layers 3 > distill_layers 2"):
        params("smoke", **{"compress.distill_layers": 2, "compress.distill_min_layers": 3})
