"""Bulk jobs without a server: reading a JSONL job, and the guard's own cap for its path."""

from __future__ import annotations

import json

import pytest

from serving.bulk import BulkInputError, chunks, read_jsonl
from serving.guard import RequestGuard
from tests.unit.serving.test_guard import CHUNK, App, Upload, call, http_scope

pytestmark = pytest.mark.unit


def test_texts_come_back_in_order_blank_lines_and_extra_keys_ignored() -> None:
    job = '{"text": "a", "id": 1}\r\n\n{"text": "b\\nc"}\n  \n{"text": ""}'
    assert read_jsonl(job, max_texts=3, max_chars=10) == ["a", "b\nc", ""]


@pytest.mark.parametrize(
    ("job", "named"),
    [
        ('{"text": "a"}\n[1, 2]', "line 2: expected a JSON object with a string 'text'"),
        ('{"text": 5}', "line 1: expected a JSON object"),
        ('{"text": "a"}\n\n{"text": "a"', "line 3: not JSON"),
        (
            '{"text": "' + "x" * 11 + '"}',
            "line 1: text of 11 characters, over serve.max_chars (10)",
        ),
        ('{"text": "a"}\n' * 4, "more than serve.bulk_max_texts (3) texts in the job (line 4)"),
        ("\n\n", "the job holds no texts"),
    ],
)
def test_the_first_broken_rule_is_named_with_its_line(job: str, named: str) -> None:
    with pytest.raises(BulkInputError) as info:
        read_jsonl(job, max_texts=3, max_chars=10)
    assert named in str(info.value)


def test_chunks_cover_every_item_once_in_order() -> None:
    assert [list(c) for c in chunks(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_path_with_its_own_cap_takes_larger_bodies_and_only_that_path() -> None:
    body = json.dumps({"jsonl": "x" * (3 * CHUNK)}).encode()
    pieces = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]
    guard = RequestGuard(
        app := App(), max_body_bytes=CHUNK, token="", body_bytes_by_path={"/bulk/submit": 4 * CHUNK}
    )
    assert call(guard, http_scope("/bulk/submit"), Upload(pieces))[0] == 200
    assert app.body == body
    status, answer = call(guard, http_scope("/predict"), Upload(pieces))
    assert status == 413 and str(CHUNK) in answer["error"]
    status, answer = call(guard, http_scope("/bulk/submit"), Upload(pieces * 2))
    assert status == 413 and str(4 * CHUNK) in answer["error"]
