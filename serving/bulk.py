"""Bulk jobs: JSONL text in, checked against the same limits as /predict.

The service's `/bulk` task endpoint (BentoML's `@bentoml.task`: POST /bulk/submit with
{"jsonl": "<the JSONL text>"}, GET /bulk/status and /bulk/get with the task id) reads the job
with `read_jsonl` and answers it in batches of serve.max_batch_size, through the same cache
and model call as /predict, so each answer is the one /predict gives for that text. The JSONL
travels inside a JSON body, not as a file upload: BentoML fetches a file field given as a URL
from the server side, which a public endpoint must not do.

One text per line: a JSON object with a string "text" (other keys are ignored); blank lines
are skipped (lines end at "\n"; a "\r" before it is JSON whitespace). The first line that
breaks a rule fails the whole job with its line number: a job is answered in full or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


class BulkInputError(ValueError):
    """A bulk job breaks a rule (the message names the line and the rule)."""


def read_jsonl(jsonl: str, *, max_texts: int, max_chars: int) -> list[str]:
    """The texts of a JSONL job, in order.

    Args:
        jsonl: the job's text, one JSON object per line.
        max_texts: most texts a job may hold (serve.bulk_max_texts).
        max_chars: most characters a text may have (serve.max_chars, as /predict).

    Returns:
        The texts, one per non-blank line.

    Raises:
        BulkInputError: a line is not JSON, not an object with a string "text", a text
            is too long, there are too many texts, or none.
    """
    texts: list[str] = []
    for number, raw in enumerate(jsonl.split("\n"), start=1):
        if not raw.strip():
            continue
        if len(texts) == max_texts:
            raise BulkInputError(
                f"more than serve.bulk_max_texts ({max_texts}) texts in the job "
                f"(line {number}); split it into several jobs"
            )
        texts.append(_text_of(raw, number, max_chars))
    if not texts:
        raise BulkInputError('the job holds no texts (one JSON object per line: {"text": ...})')
    return texts


def _text_of(raw: str, number: int, max_chars: int) -> str:
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BulkInputError(f"line {number}: not JSON ({exc})") from None
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise BulkInputError(f"line {number}: expected a JSON object with a string 'text'")
    text: str = row["text"]
    if len(text) > max_chars:
        raise BulkInputError(
            f"line {number}: text of {len(text)} characters, over serve.max_chars ({max_chars})"
        )
    return text


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in consecutive slices of at most `size` (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
