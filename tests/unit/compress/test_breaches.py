"""A parity breach fails the compression after every variant was logged, and marks the
parent run (tasks/compress/task.py fail_on_breaches), with a recording MLflow client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tasks.compress.build import BuiltVariant
from tasks.compress.task import fail_on_breaches
from tasks.compress.track import ParentRun
from tuneline.errors import ParityError

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.calls.append(("set_tag", run_id, key, value))

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> None:
        self.calls.append(("set_terminated", run_id, status))


def variant(name: str, breach: str | None = None) -> BuiltVariant:
    return BuiltVariant(name, "m", Path(name), {}, {"agreement": 1.0}, breach=breach)


@pytest.mark.parametrize("created", [True, False])
def test_every_breach_is_listed_and_the_parent_marked(created: bool):
    client = Recorder()
    parent = ParentRun(client, "p1", "0", created)
    built = [variant("fp32"), variant("int8_dynamic", "int8 bad"), variant("fp16", "fp16 bad")]
    with pytest.raises(ParityError) as err:
        fail_on_breaches(built, parent)
    assert str(err.value) == "parity check failed:\n  - int8 bad\n  - fp16 bad"
    ended = [("set_terminated", "p1", "FAILED")] if created else []  # not ours to end otherwise
    assert client.calls == [("set_tag", "p1", "tuneline.parity", "failed"), *ended]


def test_no_breach_touches_nothing():
    client = Recorder()
    fail_on_breaches([variant("fp32"), variant("int8_dynamic")], ParentRun(client, "p", "0", True))
    assert client.calls == []
