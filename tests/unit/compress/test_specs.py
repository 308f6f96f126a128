"""The variant table (tasks/compress/specs.py): every compress flag maps to one row, each row
alone is what its flag turns on, and each row is judged by the right parity thresholds."""

from __future__ import annotations

import pytest

from tasks.compress.specs import (
    BASELINE_FLAG,
    VARIANTS,
    VariantSpec,
    enabled_variants,
    parity_thresholds,
)
from tests.params import params
from tuneline.config import CompressParams

pytestmark = pytest.mark.unit

FLAGS = sorted(name for name, f in CompressParams.model_fields.items() if f.annotation is bool)
# the order the variants were always built in (MLflow child runs and refs follow it)
ORDER = [
    "int8_dynamic",
    "int8_static",
    "prune_unstructured",
    "prune_structured",
    "distilled",
    "fp16",
]


def compress(**flags: bool) -> CompressParams:
    return params("smoke", **{f"compress.{k}": v for k, v in flags.items()}).compress


def test_every_boolean_compress_flag_is_the_baseline_or_exactly_one_row():
    flags = [spec.enabled_by for spec in VARIANTS]
    assert len(flags) == len(set(flags))
    assert sorted([BASELINE_FLAG, *flags]) == FLAGS


def test_rows_are_named_once_in_build_order():
    assert [spec.name for spec in VARIANTS] == ORDER


@pytest.mark.parametrize("spec", VARIANTS, ids=lambda s: s.name)
def test_each_flag_alone_enables_its_row_only(spec: VariantSpec):
    off = {flag: False for flag in FLAGS if flag != BASELINE_FLAG}
    assert enabled_variants(compress(**{**off, spec.enabled_by: True})) == [spec]


def test_all_flags_off_builds_the_baseline_only_and_all_on_keeps_table_order():
    flags = [flag for flag in FLAGS if flag != BASELINE_FLAG]
    assert enabled_variants(compress(**dict.fromkeys(flags, False))) == []
    assert enabled_variants(compress(**dict.fromkeys(flags, True))) == list(VARIANTS)


def test_quantized_transforms_of_the_fp32_file_get_the_quant_thresholds():
    # INT8/FP16 move logits legitimately and are compared with the FP32 PyTorch model; pruned
    # and distilled models are compared with themselves and get the strict thresholds
    for spec in VARIANTS:
        assert spec.quant == (spec.from_fp32 is not None), spec.name
    assert [s.name for s in VARIANTS if s.needs_cuda] == ["fp16"]


def test_parity_thresholds_pick_the_quant_or_the_fp32_keys():
    cp = params(
        "smoke",
        **{
            "compress.parity_max_abs_logit": 0.001,
            "compress.parity_min_agreement": 0.999,
            "compress.quant_parity_max_abs_logit": 3.0,
            "compress.quant_parity_min_agreement": 0.97,
        },
    ).compress
    assert parity_thresholds(cp, quant=True) == {"max_abs_logit": 3.0, "min_agreement": 0.97}
    assert parity_thresholds(cp, quant=False) == {"max_abs_logit": 0.001, "min_agreement": 0.999}


def test_a_row_sets_exactly_one_way_of_building():
    def make_file(ctx, out):
        return {}

    def make_model(ctx):
        return None, {}

    with pytest.raises(ValueError, match="exactly one"):
        VariantSpec("x", "m", "fp16", True)
    with pytest.raises(ValueError, match="exactly one"):
        VariantSpec("x", "m", "fp16", True, from_fp32=make_file, from_torch=make_model)
