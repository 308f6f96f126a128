"""Synthetic two-class data and a few-step training loop, shared by tests and benchmarks.

The classes have disjoint vocabularies, so a tiny model learns them in a few dozen steps:
enough to exercise export, parity, serving and the gate without a real corpus.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
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


A_WORDS = ["alpha", "apple", "amber", "arrow", "anchor", "autumn", "atlas", "azure", "acorn"]
B_WORDS = ["bravo", "banana", "bronze", "bridge", "bottle", "breeze", "basalt", "bishop", "bloom"]
FILLER = ["the", "a", "of", "and", "to", "in", "is", "it", "for", "on", "with", "as"]


def filler_splits(
    prepared: Path, *, n_train: int = 320, n_val: int = 48, n_test: int = 96, seed: int = 0
) -> Path:
    """train/val/test parquet files and labels.json in `prepared`: two classes with disjoint
    vocabularies plus shared filler words, 2:1 imbalance (the majority baseline is 2/3)."""
    rng = random.Random(seed)
    vocab = [A_WORDS, B_WORDS]

    def text(label: int) -> str:
        words = [rng.choice(vocab[label]) for _ in range(rng.randint(3, 8))]
        words += [rng.choice(FILLER) for _ in range(rng.randint(1, 5))]
        rng.shuffle(words)
        return " ".join(words)

    prepared.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        labels = [0 if i % 3 else 1 for i in range(n)]
        frame = pd.DataFrame({"text": [text(y) for y in labels], "label": labels})
        frame["label"] = frame["label"].astype("int64")
        frame["augmented"] = False
        frame.to_parquet(prepared / f"{split}.parquet", index=False)
    (prepared / "labels.json").write_text(json.dumps({"labels": LABELS}))
    return prepared


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
