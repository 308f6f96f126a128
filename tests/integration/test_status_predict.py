"""`tuneline status` and `tuneline predict` answer a project without a champion, or a call
without texts, in one named line (issue 14, item 7). With a champion both are exercised by
hand on a smoke run (see the issue note); the end-to-end suite owns the served-model path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_cli_errors import one_line, project, tuneline

pytestmark = pytest.mark.integration
__all__ = ["project"]  # the module fixture, shared


def test_status_without_a_registered_model(project: Path) -> None:
    line = one_line(tuneline(project, "status"))
    assert line.startswith("status: no model 'tuneline-classifier' is registered yet")


def test_predict_without_texts_or_with_an_unreadable_file(project: Path, tmp_path: Path) -> None:
    assert one_line(tuneline(project, "predict")) == (
        "predict: give one or more TEXT arguments or --file F"
    )
    line = one_line(tuneline(project, "predict", "--file", str(tmp_path / "none.txt")))
    assert line.startswith("predict: cannot read --file ") and "none.txt" in line


def test_predict_without_a_champion(project: Path) -> None:
    line = one_line(tuneline(project, "predict", "hello there"))
    assert line.startswith("predict: no model 'tuneline-classifier' is registered yet")
