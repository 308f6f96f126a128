"""Seeded text perturbations a classifier's decision should not depend on (CheckList-style).

Each perturbation is a function (text, rng, settings) -> text. The generator for text `i`
under perturbation `name` is seeded by (seed, name, i), so a perturbed text depends on the
seed and on that text alone, never on the order or number of the others.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence

from tuneline.config import BehaviourParams

Perturbation = Callable[[str, random.Random, BehaviourParams], str]
_TRAILING = ".!?"


def typo(text: str, rng: random.Random, bp: BehaviourParams) -> str:
    """`behaviour.typos` character edits inside words: swap two neighbouring letters or drop one."""
    chars = list(text)
    for _ in range(bp.typos):
        letters = [i for i, c in enumerate(chars) if c.isalpha()]
        if len(letters) < 2:
            break
        i = rng.choice(letters)
        swappable = i + 1 < len(chars) and chars[i + 1].isalpha() and chars[i + 1] != chars[i]
        if swappable and rng.random() < 0.5:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        else:
            del chars[i]
    return "".join(chars)


def case(text: str, rng: random.Random, bp: BehaviourParams) -> str:
    """The whole text upper- or lower-cased (whichever changes it; a coin when both do)."""
    options = [t for t in (text.upper(), text.lower()) if t != text]
    return rng.choice(options) if options else text


def punctuation(text: str, rng: random.Random, bp: BehaviourParams) -> str:
    """Trailing punctuation removed, or one of . ! ? added where there is none."""
    stripped = text.rstrip(string.punctuation + " ")
    if stripped != text.rstrip(" "):
        return stripped
    return text.rstrip(" ") + rng.choice(_TRAILING)


def whitespace(text: str, rng: random.Random, bp: BehaviourParams) -> str:
    """One space doubled (or a newline for it), and spaces around the text."""
    spaces = [i for i, c in enumerate(text) if c == " "]
    if spaces:
        i = rng.choice(spaces)
        text = text[:i] + rng.choice(["  ", "\n", " \t"]) + text[i + 1 :]
    return " " * rng.randint(1, 2) + text + " " * rng.randint(1, 2)


def neutral(text: str, rng: random.Random, bp: BehaviourParams) -> str:
    """One of `behaviour.neutral_tokens` inserted at a word boundary."""
    words = text.split(" ")
    at = rng.randint(0, len(words))
    return " ".join([*words[:at], rng.choice(bp.neutral_tokens), *words[at:]])


PERTURBATIONS: dict[str, Perturbation] = {
    "typo": typo,
    "case": case,
    "punctuation": punctuation,
    "whitespace": whitespace,
    "neutral": neutral,
}


def perturb(name: str, texts: Sequence[str], seed: int, bp: BehaviourParams) -> list[str]:
    """Every text under perturbation `name`, deterministically.

    Args:
        name: a key of PERTURBATIONS.
        texts: the texts.
        seed: base.seed.
        bp: the behaviour settings.

    Returns:
        The perturbed texts, in order.
    """
    fn = PERTURBATIONS[name]
    # a str seed is hashed with SHA-512 by random.Random: stable across processes
    return [fn(t, random.Random(f"{seed}:{name}:{i}"), bp) for i, t in enumerate(texts)]
