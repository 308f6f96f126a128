"""The /bulk task endpoint of a built Bento, over HTTP on loopback (issue 15, item 3).

A JSONL job is submitted, polled and fetched; its answers are /predict's for the same texts.
A bad line and an over-limit job fail with a 4xx naming the rule; a body over
serve.bulk_max_bytes is refused at submit; the bearer token guards every bulk route.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers_serving import (
    build_variant,
    build_variant_bento,
    make_project,
    served,
    synthetic,
    write_serve_config,
)
from tuneline.config import load_params
from tuneline.io import md5_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
TOKEN = "bulk-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Small enough to cross them cheaply, large enough for a job of several batches.
BULK_MAX_TEXTS, BULK_MAX_BYTES, MAX_TEXTS = 120, 60_000, 16


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    base = tmp_path_factory.mktemp("bulk")
    params = load_params(REPO, profile="smoke")
    make_project(base / "project")
    variant = build_variant(base / "project", base / "variant", params, shuffle=False, steps=10)
    tag = build_variant_bento(
        variant,
        params,
        name="bulk-classifier",
        version=f"b-{md5_file(variant / 'model.onnx')[:10]}",
    )
    config = write_serve_config(
        base / "serve.json",
        params,
        workers=1,
        num_threads=1,
        max_texts=MAX_TEXTS,
        bulk_max_texts=BULK_MAX_TEXTS,
        bulk_max_bytes=BULK_MAX_BYTES,
    )
    env = {"TUNELINE_API_TOKEN": TOKEN}
    with (
        served(tag, base / "serve.log", serve_config=config, env=env) as url,
        httpx.Client(base_url=url, headers=AUTH, timeout=60) as client,
    ):
        yield client


def jsonl(texts: list[str]) -> str:
    return "".join(json.dumps({"text": t}) + "\n" for t in texts)


def run_job(client: httpx.Client, body: str, timeout_s: float = 120) -> httpx.Response:
    """Submit a job, poll until it ends (bounded), and fetch what it answered."""
    submitted = client.post("/bulk/submit", json={"jsonl": body})
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["task_id"]
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = client.get("/bulk/status", params={"task_id": task_id}).json()
        if status["status"] not in ("pending", "in_progress"):
            break
        time.sleep(0.2)
    assert status.get("status") in ("completed", "failed"), status
    return client.get("/bulk/get", params={"task_id": task_id})


def test_a_job_answers_what_predict_answers(server: httpx.Client) -> None:
    rows = synthetic(BULK_MAX_TEXTS - 10, seed=11)["text"].tolist()
    texts = rows[:50] + rows[:10] + rows[50:]  # repeats: some answers come from the cache
    result = run_job(server, jsonl(texts))
    assert result.status_code == 200, result.text
    direct = []
    for start in range(0, len(texts), MAX_TEXTS):
        answer = server.post("/predict", json={"texts": texts[start : start + MAX_TEXTS]})
        assert answer.status_code == 200, answer.text
        direct += answer.json()
    assert result.json() == direct
    assert len(direct) == len(texts)


@pytest.mark.parametrize(
    ("lines", "named"),
    [
        (['{"text": "fine"}', '{"text": "also fine"}', "{not json"], "line 3: not JSON"),
        (['{"text": "fine"}', '{"txt": "typo"}'], "line 2: expected a JSON object"),
        (
            ['{"text": "' + "x" * 6000 + '"}'],
            "line 1: text of 6000 characters, over serve.max_chars",
        ),
        (['{"text": "a"}'] * (BULK_MAX_TEXTS + 1), "more than serve.bulk_max_texts (120)"),
        (["", "  "], "the job holds no texts"),
    ],
)
def test_a_bad_job_fails_with_a_named_4xx(
    server: httpx.Client, lines: list[str], named: str
) -> None:
    result = run_job(server, "\n".join(lines))
    assert result.status_code == 400, result.text
    assert named in json.dumps(result.json()), result.text


def test_an_oversized_job_and_a_missing_token_are_refused_at_submit(
    server: httpx.Client,
) -> None:
    big = jsonl(["y" * 1000] * (BULK_MAX_BYTES // 1000 + 5))
    too_large = server.post("/bulk/submit", json={"jsonl": big})
    assert too_large.status_code == 413, too_large.text
    assert f"over {BULK_MAX_BYTES} bytes" in too_large.json()["error"]
    for path, method in (("/bulk/submit", "POST"), ("/bulk/status", "GET"), ("/bulk/get", "GET")):
        bare = httpx.request(method, f"{server.base_url}{path}", json={"jsonl": "{}"}, timeout=30)
        assert bare.status_code == 401, (path, bare.text)
    unknown = server.get("/bulk/get", params={"task_id": "no-such-task"})
    assert unknown.status_code == 404, unknown.text
