"""The service's limits come from the serve config the package step writes, with no fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.release.package import write_serve_config
from tests.params import REPO, params

pytestmark = pytest.mark.unit

# One interpreter for every case (importing BentoML takes seconds): the service is imported
# with the written file, then serve_config() is called again on a missing file and on a file
# lacking two limits, and everything it saw is printed as JSON.
PROBE = """
import json, os, sys
import serving.service as service
seen = {"config": service.CONFIG, "limits": list(service.LIMITS), "errors": []}
for path in sys.argv[1:]:
    os.environ["TUNELINE_SERVE_CONFIG"] = path
    try:
        service.serve_config()
    except service.ServeConfigError as exc:
        seen["errors"].append(str(exc))
print(json.dumps(seen))
"""


def python(code: str, *args: str, serve_config: Path) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter in this checkout, $TUNELINE_SERVE_CONFIG set."""
    env = {**os.environ, "TUNELINE_SERVE_CONFIG": str(serve_config)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_service_reads_the_written_limits_and_names_what_is_missing(tmp_path: Path) -> None:
    serve = params(**{"serve.max_texts": 7, "serve.max_header_bytes": 4096}).serve
    written = write_serve_config(tmp_path / "serve_config.json", serve)
    partial = tmp_path / "partial.json"
    limits = json.loads(written.read_text())
    del limits["max_header_bytes"], limits["timeout_s"]
    partial.write_text(json.dumps(limits))
    missing = tmp_path / "absent.json"
    proc = python(PROBE, str(missing), str(partial), serve_config=written)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.splitlines()[-1])
    on_disk = json.loads(written.read_text())
    assert seen["config"] == {key: on_disk[key] for key in seen["limits"]}
    assert set(seen["limits"]) <= set(serve.model_dump())
    assert seen["config"]["max_texts"] == 7 and seen["config"]["max_header_bytes"] == 4096
    absent, lacking = seen["errors"]
    assert f"serve config {missing} not found" in absent
    assert (
        lacking
        == f"serve config {partial}: missing key 'serve.timeout_s', 'serve.max_header_bytes'"
    )


def test_service_without_a_serve_config_does_not_start(tmp_path: Path) -> None:
    proc = python("import serving.service", serve_config=tmp_path / "none.json")
    assert proc.returncode != 0
    assert f"ServeConfigError: serve config {tmp_path / 'none.json'} not found" in proc.stderr


def test_zero_workers_and_threads_are_resolved_and_recorded(tmp_path: Path) -> None:
    serve = params(**{"serve.workers": 0, "serve.num_threads": 0}).serve
    written = json.loads(write_serve_config(tmp_path / "a.json", serve, cores=6).read_text())
    assert (written["workers"], written["num_threads"]) == (6, 1)
    assert written["cores"] == 6 and written["derived_from_cores"] == ["workers", "num_threads"]
    serve = params(**{"serve.workers": 2, "serve.num_threads": 0}).serve
    written = json.loads(write_serve_config(tmp_path / "b.json", serve, cores=6).read_text())
    assert (written["workers"], written["num_threads"]) == (2, 3)
    assert written["derived_from_cores"] == ["num_threads"]
