"""Fuzz the served endpoint from its own OpenAPI schema (schemathesis): 0 server errors.

Every operation BentoML publishes in /docs.json is called with generated valid and invalid
inputs (with the bearer token, so requests reach the model); the only check is
`not_a_server_error`: a 4xx for bad input is the contract, a 5xx is a failure. The short run
serves the service from this checkout (no Bento build); the slow run fuzzes a built Bento
with more examples. Status counts go to $TUNELINE_RELIABILITY_OUT/fuzz-<mode>.json.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.helpers_serving import (
    build_variant,
    build_variant_bento,
    served,
    synthetic,
    write_serve_config,
)
from tests.reliability_figures import write_figures
from tuneline.config import load_params
from tuneline.io import md5_file

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STATUSES: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fuzz")
    params = load_params(REPO, profile="smoke")
    (base / "data" / "prepared").mkdir(parents=True)
    synthetic(60, 0).to_parquet(base / "data" / "prepared" / "train.parquet", index=False)
    return build_variant(base, base / "variant", params, shuffle=False, steps=0)


def _serve(variant: Path, mode: str) -> Iterator[str]:
    params = load_params(REPO, profile="smoke")
    config = write_serve_config(variant.parent / "serve_config.json", params, max_texts=8)
    env = {"TUNELINE_API_TOKEN": TOKEN}
    log = variant.parent / f"serve-{mode}.log"
    if mode == "bento":
        version = f"fuzz-{md5_file(variant / 'model.onnx')[:10]}"
        tag = build_variant_bento(variant, params, name="fuzz-classifier", version=version)
        with served(tag, log, env=env) as base:
            yield base
    else:
        with served(
            "serving.service:Classifier", log, model_dir=variant, serve_config=config, env=env
        ) as base:
            yield base
    counts = {str(k): v for k, v in sorted(STATUSES[mode].items())}
    write_figures(f"fuzz-{mode}.json", {"mode": mode, "statuses": counts})


@pytest.fixture(scope="module")
def source_server(variant: Path) -> Iterator[str]:
    yield from _serve(variant, "source")


@pytest.fixture(scope="module")
def bento_server(variant: Path) -> Iterator[str]:
    yield from _serve(variant, "bento")


@pytest.fixture(scope="module")
def source_schema(source_server: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{source_server}/docs.json", headers=AUTH)


@pytest.fixture(scope="module")
def bento_schema(bento_server: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{bento_server}/docs.json", headers=AUTH)


FUZZ_SETTINGS = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "derandomize": True,
    "database": None,
}


def fuzz(schema: schemathesis.BaseSchema, base: str, mode: str, examples: int) -> list[str]:
    """Run every operation's generated cases; returns the paths fuzzed.

    (Hypothesis is driven directly rather than through schemathesis' pytest plugin, whose
    fixture-schema mode does not work with this pytest version.)
    """
    paths = []
    for result in schema.get_all_operations():
        operation = result.ok()
        paths.append(operation.path)
        for generation in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=examples, **FUZZ_SETTINGS)
            @given(case=operation.as_strategy(generation))
            def run(case: schemathesis.Case) -> None:
                response = case.call(base_url=base, headers=AUTH, timeout=30)
                STATUSES[mode][response.status_code] += 1
                case.validate_response(response, checks=[not_a_server_error])

            try:
                run()
            except Unsatisfiable:
                # No invalid input exists for it (e.g. a GET probe with no parameters).
                assert generation is GenerationMode.NEGATIVE, operation.path
    return paths


def test_fuzz_short_no_server_errors(
    source_schema: schemathesis.BaseSchema, source_server: str
) -> None:
    paths = fuzz(source_schema, source_server, "source", examples=15)
    assert "/predict" in paths, paths  # the fuzzing is only meaningful if /predict is walked
    # Some cases reached the model and some were refused as bad input.
    assert STATUSES["source"][200] > 0, STATUSES["source"]
    assert sum(n for code, n in STATUSES["source"].items() if 400 <= code < 500) > 0


@pytest.mark.slow
def test_fuzz_bento_no_server_errors(
    bento_schema: schemathesis.BaseSchema, bento_server: str
) -> None:
    paths = fuzz(bento_schema, bento_server, "bento", examples=150)
    assert "/predict" in paths, paths
    assert STATUSES["bento"][200] > 0, STATUSES["bento"]
