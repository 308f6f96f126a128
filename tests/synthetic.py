"""Synthetic two-class data and a few-step training loop, shared by tests and benchmarks.

The classes have disjoint vocabularies, so a tiny model learns them in a few dozen steps:
enough to exercise export, parity, serving and the gate without a real corpus.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pandas as pd

LABELS = ["ham", "spam"]
HAM = ["meeting", "lunch", "tomorrow", "office", "project", "report", "team", "schedule",
       "call", "family", "dinner", "mom", "tonight", "later", "thanks", "home"]  # fmt: skip
SPAM = ["win", "prize", "free", "cash", "claim", "offer", "urgent", "click", "money",
        "lottery", "winner", "reward", "bonus", "txt", "now"]  # fmt: skip


def synthetic_rows(n: int, seed: int, max_words: int = 10) -> pd.DataFrame:
    """`n` rows alternating ham / spam (`text`, int64 `label`, `augmented` False)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(SPAM if label else HAM) for _ in range(rng.randint(4, max_words))]
        rows.append({"text": " ".join(words), "label": label, "augmented": False})
    return pd.DataFrame(rows).astype({"label": "int64"})


def train_briefly(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    steps: int,
    lr: float = 1e-3,
    max_length: int | None = None,
) -> None:
    """`steps` AdamW steps on batches of 16 taken in order (seeded; ends in eval mode)."""
    import torch

    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        idx = [(step * 16 + j) % len(texts) for j in range(16)]
        enc = tokenizer(
            [texts[i] for i in idx],
            padding=True,
            truncation=max_length is not None,
            max_length=max_length,
            return_tensors="pt",
        )
        model(**enc, labels=torch.tensor([labels[i] for i in idx])).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
