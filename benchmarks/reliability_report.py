"""Collect the reliability suite's figures into one report: reliability.json + reliability.md.

Inputs, all in one directory (default benchmarks/results/reliability/, where
`make reliability` points TUNELINE_RELIABILITY_OUT and pytest's --junitxml):
  junit.xml                 every test's outcome
  serving-load.json         steady / 3x overload / burst / recovery phases (a built Bento)
  serving-load-short.json   the same profile with 3 s phases (make test's version)
  serving-efficiency.json   HTTP vs in-process ORT, batching on vs off
  serving-efficiency-chosen.json  the chosen variant: batching, cache (Zipf), workers, in-process
                            (benchmarks/serving_efficiency.py, every comparison interleaved)
  contention-<P>x<R>.json   registry compare-and-set under contention
  fuzz-<mode>.json          schemathesis status counts
  hostile_limits.json       hostile requests to the served endpoint (auth, size caps, paths)
A missing input is reported as "not run", never invented.

Usage: python benchmarks/reliability_report.py [RESULTS_DIR]
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(__file__).resolve().parent / "results" / "reliability"
STATUS_NOTE = (
    "Status classes: 2xx accepted; 429 (BentoML max_concurrency) and 503 (adaptive batching "
    "overload) = shed, the designed answer to overload; any other 5xx (500/502/504) = server "
    "error, required to be 0; 408 and other 4xx = client errors; timeout / conn_error = the "
    "client gave up."
)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def test_outcomes(junit: Path) -> list[dict[str, Any]]:
    if not junit.exists():
        return []
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "skipped"
        out.append(
            {
                "module": case.get("classname", "").rsplit(".", 1)[-1],
                "name": case.get("name", ""),
                "outcome": outcome,
                "seconds": float(case.get("time", 0) or 0),
            }
        )
    return out


def collect(results: Path) -> dict[str, Any]:
    return {
        "tests": test_outcomes(results / "junit.xml"),
        "serving_load": read_json(results / "serving-load.json"),
        "serving_load_short": read_json(results / "serving-load-short.json"),
        "serving_efficiency": read_json(results / "serving-efficiency.json"),
        "serving_efficiency_chosen": read_json(results / "serving-efficiency-chosen.json"),
        "contention": {
            p.stem: {k: v for k, v in read_json(p).items() if k != "by_round"}
            for p in sorted(results.glob("contention-*.json"))
        },
        "fuzz": {p.stem: read_json(p) for p in sorted(results.glob("fuzz-*.json"))},
        "hostile_limits": read_json(results / "hostile_limits.json"),
        "status_classes": STATUS_NOTE,
    }


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def load_table(load: dict[str, Any]) -> list[str]:
    lines = [
        f"Capacity (closed loop): {fmt(load['capacity_rps'])} requests/s "
        f"of {load['texts_per_request']} texts each.",
        "",
        "| phase | offered rps | sent | accepted | shed 429/503 | 5xx errors | other | "
        "throughput rps | p50 ms | p95 ms | p99 ms | max ms | wall s | send lag p99 ms "
        "| statuses |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | --- |",
    ]
    for name, p in load["phases"].items():
        lines.append(
            f"| {name} | {fmt(p['offered_rps'])} | {p['sent']} | {p['accepted']} | "
            f"{p['shed']} | {p['server_errors']} | {p['client_errors']} | "
            f"{fmt(p['throughput_rps'])} | {fmt(p['p50_ms'])} | {fmt(p['p95_ms'])} | "
            f"{fmt(p['p99_ms'])} | {fmt(p['max_ms'])} | {fmt(p.get('wall_s'))} | "
            f"{fmt(p.get('send_lag_p99_ms'))} | {json.dumps(p['statuses'])} |"
        )
    for name in ("overload_3x", "recovery_70pct"):
        timeline = load["phases"].get(name, {}).get("timeline")
        if timeline:
            cells = ", ".join(
                f"{fmt(r['t_s'], 0)}s: {r['accepted']}/{r['sent']} p99 {fmt(r['p99_ms'], 0)}"
                for r in timeline
            )
            lines += ["", f"{name} per second (accepted/sent, p99 ms): {cells}"]
    return lines


ROW_TITLES = {
    "batching_on": "adaptive batching on",
    "batching_off": "batching off (max_batch_size 1)",
    "cache_off_zipf": "Zipf stream (half repeats), cache off",
    "cache_on_zipf": "Zipf stream (half repeats), cache on",
    "workers_2": "2 workers x 1 thread, both CPUs",
}
RATIO_TITLES = {
    "http_over_inprocess": "HTTP (batching on) / in-process at max_batch_size",
    "batching_on_over_off": "batching on / off at p99 <= bound",
    "cache_on_over_off": "cache on / off at p99 <= bound, half repeats",
    "cache_on_over_off_capacity": "cache on / off, closed-loop capacity",
    "workers_2_over_1": "2 workers / 1 worker at p99 <= bound",
}


def efficiency_rows_table(eff: dict[str, Any]) -> list[str]:
    """The rows of benchmarks/serving_efficiency.py: settings, capacity, rate at the bound."""
    info, machine, rows = eff["variant_info"], eff["machine"], eff["rows"]
    bound = fmt(eff["p99_bound_ms"], 0)
    flags = ", ".join(f for f, on in machine["cpu_flags"].items() if on)
    load = ", ".join(f"{x:.1f}" for x in machine["load_average"])
    lines = [
        f"Variant {info.get('name', '?')} ({info.get('runtime', '?')}, "
        f"{info.get('precision', '?')}), {eff['texts']} test-split texts, one per request; "
        f"servers on CPU 0 (workers_2: CPUs 0-1), generator on CPU 1; {machine['cpu']} "
        f"({flags}), {machine['cores']} cores, load average {load} at the end.",
        "",
        f"| row | capacity rps (median of turns) | rps at p99 <= {bound} ms (median of sweeps) "
        "| per sweep | shed | 5xx |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, title in ROW_TITLES.items():
        r = rows.get(name)
        if r is None:
            continue
        caps = sorted(r["capacity_rps"])
        lines.append(
            f"| {title} | {fmt(caps[len(caps) // 2])} | {fmt(r['throughput_rps'])} | "
            f"{', '.join(fmt(x) for x in r['best_rps'])} | {r['shed']} | {r['server_errors']} |"
        )
    for name, value in rows["inprocess_texts_per_s"].items():
        lines.append(f"| in-process texts/s, {name.replace('_', ' ')} | | {fmt(value)} | | | |")
    lines += ["", "| ratio | measured | target |", "| --- | ---: | ---: |"]
    for name, title in RATIO_TITLES.items():
        target = eff["targets"].get(name)
        cell = f">= {target}" if target else ""
        lines.append(f"| {title} | {fmt(eff['ratios'].get(name), 2)} | {cell} |")
    return lines


def hostile_table(hostile: dict[str, Any]) -> list[str]:
    """One row per hostile request kind; a kind whose test did not finish is "not run"."""
    rows = {
        "non_ascii_bearer": lambda f: (
            "non-ASCII bearer (`Bearer caf\\xe9`), a non-ASCII token configured",
            f["status"],
            f"answered in {fmt(f['ms'])} ms; the configured token itself: "
            f"{f['configured_non_ascii_token_status']}",
        ),
        "chunked_body": lambda f: (
            f"chunked body (no Content-Length), {f['body_mb']} MB",
            f["status"],
            f"worker RSS {fmt(f['worker_rss_mb_before'])} -> {fmt(f['worker_rss_mb_after'])} MB; "
            f"{f['error']}",
        ),
        "oversized_headers": lambda f: (
            f"one {f['header_mb']} MB header",
            f["status"],
            f"worker RSS after {fmt(f['worker_rss_mb_after'])} MB; {f['error']}",
        ),
        "unknown_paths": lambda f: (
            f"{f['paths']} unknown paths (half with the token)",
            json.dumps(f["statuses"]),
            f"/metrics {f['metrics_bytes_before']} -> {f['metrics_bytes_after']} bytes",
        ),
    }
    lines = ["| request | status | figures |", "| --- | --- | --- |"]
    for key, row in rows.items():
        cells = row(hostile[key]) if key in hostile else (key.replace("_", " "), "not run", "")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Reliability report", "", STATUS_NOTE, ""]
    tests = report["tests"]
    lines += ["## Tests", ""]
    if tests:
        by_module: dict[str, dict[str, int]] = {}
        for t in tests:
            counts = by_module.setdefault(t["module"], {"passed": 0, "failed": 0, "skipped": 0})
            counts[t["outcome"]] += 1
        lines += ["| module | passed | failed | skipped |", "| --- | ---: | ---: | ---: |"]
        for module, c in sorted(by_module.items()):
            lines.append(f"| {module} | {c['passed']} | {c['failed']} | {c['skipped']} |")
        failed = [t for t in tests if t["outcome"] == "failed"]
        if failed:
            lines += ["", "Failed: " + ", ".join(f"`{t['module']}::{t['name']}`" for t in failed)]
    else:
        lines.append("not run (no junit.xml)")
    lines += ["", "## Serving load (open loop, latency from scheduled send time)", ""]
    for title, load in (
        ("Full profile (a built Bento, 10 s phases)", report["serving_load"]),
        (
            "Short profile (`make test`: the service from source, 3 s phases)",
            report.get("serving_load_short"),
        ),
    ):
        lines += [f"### {title}", ""]
        lines += load_table(load) if load else ["not run"]
        lines.append("")
    lines += ["", "## Serving efficiency (measured, not asserted)", ""]
    eff = report["serving_efficiency"]
    if eff:
        on, off = eff["batching_on"], eff["batching_off"]
        bound = fmt(eff["p99_bound_ms"], 0)
        lines += [
            f"Model: {eff.get('model', '?')}, {eff.get('texts_per_request', '?')} text(s) of "
            f"{eff.get('words_per_text', '?')} words per request; server and in-process ORT on "
            "the same single CPU, 1 ORT thread.",
            "",
            "| figure | value | target |",
            "| --- | ---: | ---: |",
        ]
        for name, value in eff.get("inprocess_ort_texts_per_s", {}).items():
            lines.append(f"| in-process ORT, texts/s, {name.replace('_', ' ')} | {fmt(value)} | |")
        lines += [
            f"| HTTP capacity (closed loop), batching on / off, requests/s | "
            f"{fmt(on['capacity_rps'])} / {fmt(off['capacity_rps'])} | |",
            f"| HTTP at p99 <= {bound} ms, batching on, requests/s | "
            f"{fmt(on['throughput_rps'])} (p99 {fmt(on['p99_ms'])} ms) | |",
            f"| HTTP at p99 <= {bound} ms, batching off, requests/s | "
            f"{fmt(off['throughput_rps'])} (p99 {fmt(off['p99_ms'])} ms) | |",
            f"| HTTP / best in-process | {fmt(eff['http_over_inprocess'], 2)} | >= 0.8 |",
            f"| batching on / off at equal p99 | {fmt(eff['batching_on_over_off'], 2)} | >= 1.5 |",
        ]
    else:
        lines.append("not run")
    lines += ["", "## Serving efficiency of the chosen variant (interleaved, measured)", ""]
    chosen = report.get("serving_efficiency_chosen")
    lines += efficiency_rows_table(chosen) if chosen else ["not run"]
    lines += ["", "## Registry under contention (MLflow server on SQLite)", ""]
    if report["contention"]:
        lines += [
            "| run | attempts | moves | lost_race | errors | rounds with exactly one move | "
            "'database is locked' in server log | attempt p50 s | attempt max s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for c in report["contention"].values():
            lines.append(
                f"| {c['procs']} procs x {c['rounds']} rounds | {c['attempts']} | {c['moves']} | "
                f"{c['lost_race']} | {len(c['errors'])} | {c['rounds_with_exactly_one_move']}"
                f"/{c['rounds']} | {c['server_database_locked_lines']} | "
                f"{fmt(c['attempt_p50_s'], 2)} | {fmt(c['attempt_max_s'], 2)} |"
            )
    else:
        lines.append("not run")
    lines += ["", "## Fuzzing (schemathesis, from /docs.json)", ""]
    if report["fuzz"]:
        lines += ["| target | calls | 5xx | statuses |", "| --- | ---: | ---: | --- |"]
        for f in report["fuzz"].values():
            statuses = {int(k): v for k, v in f["statuses"].items()}
            fivexx = sum(v for k, v in statuses.items() if k >= 500)
            lines.append(
                f"| {f['mode']} | {sum(statuses.values())} | {fivexx} | "
                f"{json.dumps(f['statuses'])} |"
            )
    else:
        lines.append("not run")
    lines += ["", "## Hostile requests (the service from source, measured on its worker)", ""]
    hostile = report.get("hostile_limits")
    lines += hostile_table(hostile) if hostile else ["not run"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    results = Path(args[0]) if args else DEFAULT_DIR
    results.mkdir(parents=True, exist_ok=True)
    report = collect(results)
    (results / "reliability.json").write_text(json.dumps(report, indent=2, default=str))
    (results / "reliability.md").write_text(markdown(report))
    print(f"wrote {results / 'reliability.md'} and {results / 'reliability.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
