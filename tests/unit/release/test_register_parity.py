"""register.parity_from_variant: which thresholds a variant.json's parity stats are judged by."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.release.register import parity_from_variant
from tuneline.config import load_params

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
# agreement 0.995 passes the reduced-precision floor (0.99) but not the FP32 one (0.999)
STATS = {"agreement": 0.995, "max_abs_logit": 0.5}


@pytest.mark.parametrize(
    ("variant", "passed"),
    [
        ({"precision": "bf16", "name": "distilled_bf16_ov", "parity": STATS}, True),
        ({"precision": "int8_static", "name": "x", "parity": STATS}, True),
        # a recorded fp32 is judged as fp32, whatever its name says
        ({"precision": "fp32", "name": "int8_lookalike", "parity": STATS}, False),
        ({"method": "quantize_dynamic", "parity": STATS}, True),  # no precision: the method
        ({"name": "fp32", "parity": STATS}, False),
        ({"precision": "bf16"}, False),  # nothing measured = not passed
        ({"precision": "fp32", "parity": {"passed": True}}, True),
    ],
)
def test_thresholds_follow_the_recorded_precision(variant: dict, passed: bool):
    assert parity_from_variant(variant, load_params(ROOT, "default").compress) is passed
