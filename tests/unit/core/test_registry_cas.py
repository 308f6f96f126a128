"""The champion compare-and-set (tuneline.registry.move_champion / rollback_champion) against a
real MLflow sqlite store, one per test.

Marked integration, not unit: MLflow's schema migrations take seconds, so they run once per
module into a template database that every test copies (each test then takes ~0.2 s and sees
only its own store). Versions carry no artifacts: the compare-and-set reads and writes aliases
and tags only.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuneline import registry

pytestmark = pytest.mark.integration

MODEL = "cas-classifier"


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow database, never written after this fixture."""
    home = tmp_path_factory.mktemp("cas-template")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNELINE_HOME", str(home))
        mp.delenv("TUNELINE_MLFLOW_TRACKING_URI", raising=False)
        registry.client().search_registered_models()  # creates and migrates mlflow.db
    return home / "mlflow.db"


@pytest.fixture
def versions(
    template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[str]]:
    """A fresh store holding MODEL with three versions and no champion."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy2(template_db, home / "mlflow.db")
    monkeypatch.setenv("TUNELINE_HOME", str(home))
    monkeypatch.delenv("TUNELINE_MLFLOW_TRACKING_URI", raising=False)
    mlc = registry.client()
    mlc.create_registered_model(MODEL)
    made = [mlc.create_model_version(MODEL, source=f"file://{tmp_path}/v{i}") for i in range(3)]
    yield [str(v.version) for v in made]


def champion() -> str | None:
    return registry.alias_version(MODEL, registry.CHAMPION)


def seen(move: registry.AliasMove) -> tuple[str, str | None, str | None, str | None]:
    """(outcome, from, to, observed): everything a move reports."""
    return move.outcome, move.from_version, move.to_version, move.observed


def test_first_move_from_no_champion(versions: list[str]) -> None:
    v1 = versions[0]
    assert champion() is None
    assert seen(registry.move_champion(MODEL, v1, expected=None)) == ("moved", None, v1, None)
    assert champion() == v1
    assert registry.champion_history(MODEL) == [v1]


def test_a_move_succeeds_only_from_the_champion_it_read(versions: list[str]) -> None:
    v1, v2, v3 = versions
    registry.move_champion(MODEL, v1, expected=None)
    assert seen(registry.move_champion(MODEL, v2, expected=v1)) == ("moved", v1, v2, v1)
    # read v1 (or no champion) before v2 won: refused, and nothing changes
    assert seen(registry.move_champion(MODEL, v3, expected=v1)) == ("lost_race", v1, v3, v2)
    assert seen(registry.move_champion(MODEL, v3, expected=None)) == ("lost_race", None, v3, v2)
    assert champion() == v2
    assert registry.champion_history(MODEL) == [v1, v2]


def test_the_reread_happens_under_the_lock(versions: list[str]) -> None:
    """A move waits for the lock, then compares with what champion is *then*."""
    v1, v2, v3 = versions
    registry.move_champion(MODEL, v1, expected=None)
    result: list[registry.AliasMove] = []
    mover = threading.Thread(target=lambda: result.append(registry.move_champion(MODEL, v3, v1)))
    with registry.registry_lock(MODEL):
        mover.start()
        mover.join(timeout=0.5)
        assert mover.is_alive(), "move_champion did not wait for the registry lock"
        # another process's set, while this one holds the lock
        registry.client().set_registered_model_alias(MODEL, registry.CHAMPION, v2)
    mover.join(timeout=30)
    assert [m.outcome for m in result] == ["lost_race"] and result[0].observed == v2
    assert champion() == v2


def test_champion_set_outside_tuneline_is_kept_in_history_once(versions: list[str]) -> None:
    v1, v2, v3 = versions
    registry.move_champion(MODEL, v1, expected=None)
    registry.client().set_registered_model_alias(MODEL, registry.CHAMPION, v3)  # the MLflow UI
    assert registry.move_champion(MODEL, v2, expected=v3).outcome == "moved"
    assert registry.champion_history(MODEL) == [v1, v3, v2]
    # so a rollback returns to the hand-set champion, then to the one before it
    assert registry.rollback_champion(MODEL).to_version == v3
    assert registry.rollback_champion(MODEL).to_version == v1


def test_re_promoting_a_hand_set_champion_adds_it_once(versions: list[str]) -> None:
    v1, _, v3 = versions
    registry.move_champion(MODEL, v1, expected=None)
    registry.client().set_registered_model_alias(MODEL, registry.CHAMPION, v3)
    assert registry.move_champion(MODEL, v3, expected=v3).outcome == "moved"
    assert registry.champion_history(MODEL) == [v1, v3]
    move = registry.rollback_champion(MODEL)
    assert (move.from_version, move.to_version) == (v3, v1)  # not onto itself


def test_rollback_walks_back_through_the_history(versions: list[str]) -> None:
    v1, v2, v3 = versions
    for new, old in ((v1, None), (v2, v1), (v3, v2)):
        registry.move_champion(MODEL, new, expected=old)
    move = registry.rollback_champion(MODEL)
    assert (move.outcome, move.from_version, move.to_version) == ("moved", v3, v2)
    assert champion() == v2 and registry.champion_history(MODEL) == [v1, v2]
    assert registry.rollback_champion(MODEL).to_version == v1
    last = registry.rollback_champion(MODEL)
    assert (last.outcome, last.from_version, last.to_version) == ("nothing_to_roll_back", v1, None)
    assert champion() == v1 and registry.champion_history(MODEL) == [v1]


def test_rollback_without_a_champion_moves_nothing(versions: list[str]) -> None:
    move = registry.rollback_champion(MODEL)
    assert move.outcome == "nothing_to_roll_back" and move.from_version is None
    assert champion() is None


def test_rollback_marks_the_version_left_and_a_promotion_clears_it(versions: list[str]) -> None:
    v1, v2, _ = versions
    registry.move_champion(MODEL, v1, expected=None)
    registry.move_champion(MODEL, v2, expected=v1)
    registry.rollback_champion(MODEL)
    assert registry.rolled_back_on(MODEL, v2) is not None
    assert registry.rolled_back_on(MODEL, v1) is None
    assert registry.move_champion(MODEL, v2, expected=v1).outcome == "moved"
    assert registry.rolled_back_on(MODEL, v2) is None  # promoted again: no longer held
    registry.rollback_champion(MODEL)
    assert registry.rolled_back_on(MODEL, v2) is not None  # the next rollback marks it anew


def test_a_lost_race_clears_no_mark(versions: list[str]) -> None:
    v1, v2, v3 = versions
    registry.move_champion(MODEL, v1, expected=None)
    registry.move_champion(MODEL, v2, expected=v1)
    registry.rollback_champion(MODEL)  # v2 marked, champion v1
    assert registry.move_champion(MODEL, v2, expected=v3).outcome == "lost_race"
    assert registry.rolled_back_on(MODEL, v2) is not None
