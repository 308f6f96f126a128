"""Compress the fine-tuned model as a hardware-aware search, and choose what to serve.

The task runs three stages in order: search (every enabled structure x precision x runtime
this machine can run, each exported to a fused ONNX graph, parity-checked against its PyTorch
source through the runtime that would serve it, and scored on the test split;
tasks/compress/build.py), track (one MLflow child run per candidate, dropped ones included,
tasks/compress/track.py) and select (the fastest inside the accuracy budget by
compress.objective, tasks/compress/select.py; the Pareto table goes on the parent run).

The search space is tasks/compress/specs.py: structures parent, distilled (fewer layers, KD,
stopped on val), pruned (FFN rows); pairs fp32/ort, fp32/ov, bf16/ov (CPUs with BF16),
int8_dynamic/ort, int8_static/ort, int8_static/ov, fp16/ort (CUDA). A candidate that fails
(export error, parity breach, collapsed class) is dropped with its reason; the run fails only
when no candidate is left inside the budget.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prefect import task

from tasks.behaviour.suite import check_candidates
from tasks.compress import track as T
from tasks.compress.build import search_candidates
from tasks.compress.candidates import Candidate, Search
from tasks.compress.select import pareto_front, pareto_markdown, select_candidate
from tasks.compress.specs import PAIRS, STRUCTURES, candidate_name
from tuneline.caching import cached, compress_key
from tuneline.config import Params
from tuneline.errors import CompressionError
from tuneline.io import write_json
from tuneline.lineage import lineage_tags
from tuneline.truncation import model_seq_len


@dataclass(frozen=True)
class VariantRef:
    """One candidate that passed parity: where it is, its MLflow child run, scores, parity,
    and the runtime that serves it."""

    name: str
    method: str
    onnx_dir: str
    run_id: str | None
    metrics: dict[str, float]
    parity: dict[str, float]
    runtime: str


@dataclass(frozen=True)
class CompressResult:
    """The chosen candidate, every candidate that passed parity, why every other one lost
    (dropped, failed, skipped, outside the budget, slower), and the Pareto table."""

    chosen: VariantRef
    variants: tuple[VariantRef, ...]
    rejected: dict[str, str]
    pareto_md: str


def track_candidates(
    search: Search, parent: T.ParentRun, lineage: dict[str, str]
) -> list[VariantRef]:
    """Log each scored candidate as a child run of `parent` (dropped ones without artifacts).

    Args:
        search: the search's candidates.
        parent: the parent MLflow run.
        lineage: tags every child run carries (tuneline.lineage.lineage_tags).

    Returns:
        A reference per candidate that passed parity, in build order.
    """
    refs = []
    for c in search.candidates:
        settings = {
            **c.settings,
            "structure": c.structure,
            "precision": c.precision,
            "runtime": c.runtime,
            "fusions": json.dumps(c.fusions),
        }
        run_id = T.log_variant(
            parent,
            c.name,
            c.method,
            settings,
            c.scores,
            c.parity,
            None if c.dropped else c.dir,
            {**lineage, **({"dropped": c.dropped[:500]} if c.dropped else {})},
        )
        if c.dropped is None:
            refs.append(
                VariantRef(c.name, c.method, str(c.dir), run_id, c.scores, c.parity, c.runtime)
            )
    return refs


def _decisions(search: Search, rejected: dict[str, str]) -> dict[str, str]:
    """Why each candidate was not chosen: dropped, failed, skipped or outside/slower."""
    out = {c.name: c.dropped for c in search.candidates if c.dropped}
    return {**out, **rejected, **search.failed, **search.skipped}


def _rows(search: Search) -> dict[str, dict[str, object]]:
    rows: dict[str, dict[str, object]] = {}
    for c in search.candidates:
        lost = f"lost {', '.join(c.lost)}" if c.lost else "all expected"
        rows[c.name] = {
            "structure": c.structure,
            "precision": c.precision,
            "runtime": c.runtime,
            "fusions": lost,
        }
    coords: dict[str, dict[str, object]] = {
        candidate_name(s.name, p): {
            "structure": s.name,
            "precision": p.precision,
            "runtime": p.runtime,
        }
        for s in STRUCTURES
        for p in PAIRS
    }
    for name in (*search.failed, *search.skipped):
        rows.setdefault(name, coords.get(name, {}))
    return rows


def choose_candidate(
    search: Search,
    refs: Sequence[VariantRef],
    params: Params,
    output_dir: Path,
    parent: T.ParentRun,
) -> CompressResult:
    """Select the fastest candidate inside the budget; write and log the Pareto table and plot.

    Args:
        search: the search.
        refs: the tracked candidates that passed parity.
        params: settings (compress.accuracy_budget, max_recall_drop, objective).
        output_dir: pareto.md, pareto.png and selection.json are written there.
        parent: the parent run they are logged to.

    Returns:
        The CompressResult.

    Raises:
        CompressionError: no candidate passed parity and the budget (the parent run is
            tagged failed; every candidate's reason is listed).
    """
    cp = params.compress
    passed: dict[str, Candidate] = {c.name: c for c in search.passed}
    scores = {name: c.scores for name, c in passed.items()}
    try:
        chosen, rejected = select_candidate(scores, search.reference, cp)
    except CompressionError as exc:
        T.fail_parent(parent)
        reasons = [*exc.reasons, *(f"{n}: {w}" for n, w in _decisions(search, {}).items())]
        raise CompressionError("no compressed candidate can be served", reasons) from None
    decisions = _decisions(search, rejected)
    all_scores = {c.name: c.scores for c in search.candidates}
    table = pareto_markdown(
        _rows(search), all_scores, chosen, decisions, search.reference, cp.objective
    )
    md_path, png_path = output_dir / "pareto.md", output_dir / "pareto.png"
    md_path.write_text(f"# Compression: chosen `{chosen}`\n\n{table}", encoding="utf-8")
    T.plot_pareto(scores, chosen, png_path, pareto_front(scores, cp.objective), cp.objective)
    by_name = {r.name: r for r in refs}
    selection = output_dir / "selection.json"
    write_json(
        selection,
        {
            "chosen": chosen,
            "rejected": decisions,
            "chosen_dir": by_name[chosen].onnx_dir,
            "reference": search.reference,
            "objective": cp.objective,
        },
    )
    T.log_parent(parent, [md_path, png_path, selection], chosen, by_name[chosen].run_id)
    return CompressResult(by_name[chosen], tuple(refs), decisions, table)


def check_chosen(search: Search, prepared_dir: Path, params: Params) -> None:
    """Calibrate the candidate selection will choose and run the behavioural suite on it.

    Neither changes the choice (the temperature keeps every argmax; behaviour is a gate rule),
    so only the one that will be served pays for them (on SMS all nine passed candidates were
    checked, part of the 8.5 min after the last build). No candidate inside the budget:
    nothing to check (choose_candidate's selection then fails with the reasons).
    """
    try:
        chosen, _ = select_candidate(
            {c.name: c.scores for c in search.passed}, search.reference, params.compress
        )
    except CompressionError:
        return
    candidate = next(c for c in search.passed if c.name == chosen)
    # calibrated, then the behavioural suite, as served
    candidate.scores.update(check_candidates([candidate.dir], prepared_dir, params)[0])


@task(retries=0)
def compress_model(
    model_dir: Path,
    prepared_dir: Path,
    params: Params,
    *,
    output_dir: Path,
    parent_run_id: str | None,
) -> CompressResult:
    """Search, track and select: the fastest candidate inside the budget.

    Args:
        model_dir: fine-tuned HF classifier directory (safetensors, tokenizer, labels.json).
        prepared_dir: data/prepared with {train,test}.parquet and labels.json.
        params: settings (compress section; train.max_seq_len; base.seed).
        output_dir: one variant directory per variant is written under it.
        parent_run_id: the fine-tune MLflow run; None makes a 'compress' run the parent.

    Returns:
        CompressResult with the chosen variant's reference.

    Raises:
        CompressionError: no candidate passed parity and the budget (each reason listed).
    """
    model_dir, prepared_dir, output_dir = Path(model_dir), Path(prepared_dir), Path(output_dir)
    params = model_seq_len(params, model_dir)  # max_seq_len 'auto': the length it trained at
    label_src = model_dir / "labels.json"
    labels = json.loads(
        (label_src if label_src.exists() else prepared_dir / "labels.json").read_text("utf-8")
    )["labels"]
    search = search_candidates(model_dir, prepared_dir, params, output_dir, labels)
    check_chosen(search, prepared_dir, params)
    parent = T.open_parent(parent_run_id)
    refs = track_candidates(search, parent, lineage_tags(prepared_dir.parent.parent))
    return choose_candidate(search, refs, params, output_dir, parent)


# Never retried (a failed search is a finding, not flaky I/O); skipped when its inputs,
# params and code are unchanged (tuneline.caching).
compress_model = cached(compress_model, compress_key)
