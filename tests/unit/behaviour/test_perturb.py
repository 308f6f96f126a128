"""Each perturbation: deterministic with the seed, changes the text the way it says, and
depends on the text alone (not on its neighbours)."""

from __future__ import annotations

import string

import pytest

from tasks.behaviour.perturb import PERTURBATIONS, perturb
from tests.params import section

pytestmark = pytest.mark.unit

BP = section("behaviour")
TEXTS = [
    "Free entry in 2 a wkly comp to win FA Cup final tkts",
    "Ok lar... Joking wif u oni",
    "I'll be home soon, don't wait up.",
    "URGENT! You have won a 1 week FREE membership",
]


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_same_seed_same_texts_other_seed_other_texts(name: str) -> None:
    first = perturb(name, TEXTS, 42, BP)
    assert first == perturb(name, TEXTS, 42, BP)
    assert len(first) == len(TEXTS)
    if name != "case":  # case has at most two outcomes per text; the others draw positions
        others = [perturb(name, TEXTS, seed, BP) for seed in range(1, 6)]
        assert any(o != first for o in others)


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_a_text_does_not_depend_on_its_neighbours(name: str) -> None:
    alone = perturb(name, TEXTS[:2], 7, BP)
    assert perturb(name, TEXTS, 7, BP)[:2] == alone


def test_typo_swaps_or_drops_letters_only() -> None:
    for seed in range(20):
        for before, after in zip(TEXTS, perturb("typo", TEXTS, seed, BP), strict=True):
            assert after != before
            assert len(before) - BP.typos <= len(after) <= len(before)
            assert sorted(c for c in after if not c.isalpha()) == sorted(
                c for c in before if not c.isalpha()
            )  # punctuation, digits and spaces untouched


def test_case_upper_or_lower_whole_text() -> None:
    for before, after in zip(TEXTS, perturb("case", TEXTS, 3, BP), strict=True):
        assert after in (before.upper(), before.lower()) and after != before
    assert perturb("case", ["all lower"], 0, BP) == ["ALL LOWER"]


def test_punctuation_strips_or_adds_a_final_mark() -> None:
    out = perturb("punctuation", TEXTS, 5, BP)
    assert out[1][:-1] == TEXTS[1] and out[1][-1] in ".!?"  # none there: one added
    assert out[2] == "I'll be home soon, don't wait up"  # one there: removed
    assert all(a.rstrip(string.punctuation) == b.rstrip(string.punctuation) for a, b in
               zip(out, TEXTS, strict=True))  # fmt: skip


def test_whitespace_keeps_the_words() -> None:
    for before, after in zip(TEXTS, perturb("whitespace", TEXTS, 9, BP), strict=True):
        assert after != before and after.split() == before.split()


def test_neutral_inserts_one_configured_token() -> None:
    for before, after in zip(TEXTS, perturb("neutral", TEXTS, 11, BP), strict=True):
        words, added = before.split(" "), after.split(" ")
        assert len(added) == len(words) + 1
        extra = [w for w in added if w not in words] or added  # the token may repeat a word
        assert any(w in BP.neutral_tokens for w in extra)
