"""The search (the build stage of tasks/compress/task.py): build, check and score candidates.

Each enabled structure (tasks/compress/specs.py) is made in PyTorch and exported once to a
fused FP32 ONNX file; each (precision, runtime) pair transforms that file and runs it. Every
candidate is evaluated through the runtime that would serve it on the test texts as they are
(their real lengths), at the serving batch size: its accuracy and its parity with its
structure's PyTorch model. Speed (rows/s at the serving batch size, p95 latency at batch 1) is
measured for all candidates together in interleaved rounds (`time_variants`): the parent's
before the other structures are ranked on them, and everyone's again at the end.

The parent is searched first over every pair; a smaller structure only gets the parent's
`compress.search_keep` fastest pairs inside the accuracy budget (the others are dominated on
this CPU: a structure change scales every runtime alike). A candidate that breaks is dropped
with its reason and the search goes on: an export or transform error, a parity breach, a
collapsed class (a recall under gate.min_class_recall).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.predictor import MODEL_FILE, VARIANT_FILE
from tasks.compress.candidates import Candidate, Search, load_split, machine_offers
from tasks.compress.export import (
    check_parity,
    export_fp32,
    fusion_counts,
    missing_fusions,
    parity_stats,
    write_variant_dir,
)
from tasks.compress.score import evaluate_variant, quality, time_variants
from tasks.compress.select import objective_key, ranked
from tasks.compress.specs import (
    PARENT,
    BuildContext,
    Pair,
    Settings,
    Structure,
    candidate_name,
    enabled_pairs,
    enabled_structures,
    parity_thresholds,
)
from tuneline.config import Params
from tuneline.errors import ParityError
from tuneline.io import write_json
from tuneline.models import load_classifier, torch_logits
from tuneline.processes import machine_cores


def search_candidates(
    model_dir: Path, prepared_dir: Path, params: Params, output_dir: Path, labels: list[str]
) -> Search:
    """Build, check and score every candidate the params enable and this machine can run.

    PyTorch (distillation, pruning recovery, exports, reference logits) runs on every core this
    process may use: none of it is timed (compress.num_threads is the runtimes' timing threads).
    The previous count is restored and the scratch directory removed afterwards.

    Args: the fine-tuned HF classifier directory; data/prepared (train: calibration, KD,
    recovery; val: KD's stop; test); the settings; where one directory per candidate is written;
    the class names. Returns the Search.
    """
    import torch

    work = output_dir / ".work"
    threads = torch.get_num_threads()
    torch.set_num_threads(machine_cores())
    try:
        teacher, tokenizer = load_classifier(model_dir)
        ctx = BuildContext(
            model_dir=model_dir,
            teacher=teacher,
            tokenizer=tokenizer,
            params=params,
            labels=labels,
            train=load_split(prepared_dir, "train"),
            val=load_split(prepared_dir, "val"),
            test=load_split(prepared_dir, "test"),
            output_dir=output_dir,
            work=work,
        )
        pairs, unavailable = enabled_pairs(params.compress, machine_offers())
        teacher_logits = _reference_logits(ctx, teacher)
        search = Search(reference=quality(ctx.test[1], teacher_logits, ctx.labels))
        for structure in enabled_structures(params.compress):
            if structure.name == PARENT:
                todo = pairs
            else:
                if not any("throughput" in c.scores for c in search.passed):
                    _time(ctx, search.passed)  # the parent's pairs, ranked for the others
                todo = _kept(ctx, search, pairs, structure)
            for key, why in unavailable.items():
                search.skipped[f"{structure.name}_{key}"] = why
            known = teacher_logits if structure.name == PARENT else None
            _search_structure(ctx, structure, todo, search, known)
        _time(ctx, search.passed)  # every candidate again, together: the figures selection uses
        for c in search.passed:
            info = json.loads((c.dir / VARIANT_FILE).read_text("utf-8"))
            write_json(c.dir / VARIANT_FILE, {**info, "metrics": c.scores})
        return search
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(work, ignore_errors=True)


def _reference_logits(ctx: BuildContext, model: Any) -> np.ndarray:
    return torch_logits(model, ctx.tokenizer, ctx.test[0], ctx.max_len, cut=ctx.cut)


def _kept(ctx: BuildContext, search: Search, pairs: list[Pair], structure: Structure) -> list[Pair]:
    """The parent's `search_keep` fastest pairs inside the budget; the rest are skipped."""
    cp = ctx.params.compress
    parents = {c.name: c for c in search.passed if c.structure == PARENT}
    order = ranked({n: c.scores for n, c in parents.items()}, search.reference, cp)
    if not order:  # nothing to learn from the parent: try every pair
        return pairs
    keep_names = order[: cp.search_keep]
    key = objective_key(cp.objective)
    best = parents[keep_names[-1]].scores[key]
    kept = []
    for pair in pairs:
        parent_name = candidate_name(PARENT, pair)
        if parent_name in keep_names:
            kept.append(pair)
        elif parent_name not in parents:
            search.skipped[candidate_name(structure.name, pair)] = (
                f"skipped: {parent_name} did not pass, so this pair is not tried on smaller "
                "structures"
            )
        else:
            search.skipped[candidate_name(structure.name, pair)] = (
                f"dominated: as {parent_name} it measured {key} "
                f"{parents[parent_name].scores[key]:.1f}, outside the parent's "
                f"{cp.search_keep} best inside the budget (the last kept: {best:.1f})"
            )
    return kept


def _search_structure(
    ctx: BuildContext,
    structure: Structure,
    pairs: list[Pair],
    search: Search,
    known_logits: np.ndarray | None,
) -> None:
    if not pairs:
        return
    try:
        model, settings = (ctx.teacher, {}) if structure.build is None else structure.build(ctx)
        why = search.dominated(structure.name, model, settings)
        if why and ctx.params.compress.skip_dominated:  # before its source is saved
            search.skipped.update({candidate_name(structure.name, p): why for p in pairs})
            return
        source = _source(ctx, structure, model)
        fp32_dir = ctx.work / structure.name
        export_fp32(
            model,
            ctx.tokenizer,
            ctx.labels,
            fp32_dir,
            opset=ctx.params.compress.opset,
            max_seq_len=ctx.params.train.max_seq_len,
            work_dir=ctx.work,
            meta={"source": str(source), **ctx.cut.meta()},  # serving cuts texts the same way
        )
        reference = _reference_logits(ctx, model) if known_logits is None else known_logits
    except Exception as exc:  # a broken structure drops its candidates, not the run
        for pair in pairs:
            search.failed[candidate_name(structure.name, pair)] = f"build failed: {_why(exc)}"
        return
    files: dict[str, tuple[Path, Settings]] = {"fp32": (fp32_dir / MODEL_FILE, {})}
    for pair in pairs:
        name = candidate_name(structure.name, pair)
        try:
            onnx_file, extra = _transformed(ctx, pair, structure.name, files)
            target = _write(ctx, structure, pair, onnx_file, {**settings, **extra}, fp32_dir)
            search.candidates.append(
                _score(ctx, structure, pair, target, {**settings, **extra}, reference)
            )
        except Exception as exc:  # an export or runtime error drops this candidate only
            search.failed[name] = f"build failed: {_why(exc)}"
            shutil.rmtree(ctx.output_dir / name, ignore_errors=True)
        ctx.progress.update(len(search.candidates) + len(search.failed), f"last {name}")


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc) else ''}"


def _source(ctx: BuildContext, structure: Structure, model: Any) -> Path:
    """The structure's PyTorch source directory: the parent's, or `model` saved."""
    if structure.build is None:
        return ctx.model_dir
    source = ctx.output_dir / "sources" / structure.name
    # kept (safetensors) for lineage and the benchmark: its parity reference is this model
    model.save_pretrained(str(source), safe_serialization=True)
    ctx.tokenizer.save_pretrained(str(source))
    write_json(source / "labels.json", {"labels": list(ctx.labels)})
    return source


def _transformed(
    ctx: BuildContext, pair: Pair, structure: str, files: dict[str, tuple[Path, Settings]]
) -> tuple[Path, Settings]:
    """The pair's ONNX file for this structure, made once and shared by pairs that use it."""
    key = pair.transform_key()
    if key not in files:
        assert pair.transform is not None  # "fp32" is always in `files`
        out = ctx.work / f"{structure}.{key}.onnx"
        files[key] = (out, pair.transform(ctx, files["fp32"][0], out))
    return files[key]


def _write(
    ctx: BuildContext,
    structure: Structure,
    pair: Pair,
    onnx_file: Path,
    settings: Settings,
    fp32_dir: Path,
) -> Path:
    name = candidate_name(structure.name, pair)
    fp32_info = json.loads((fp32_dir / VARIANT_FILE).read_text("utf-8"))
    layers = int(fp32_info["architecture"]["layers"])
    fusions = fusion_counts(onnx_file)
    info = {
        **fp32_info,
        "name": name,
        "method": f"{structure.method}+{pair.precision}",
        "structure": structure.name,
        "precision": pair.precision,
        "runtime": pair.runtime,
        "settings": settings,
        "fusions": fusions,
        "lost_fusions": missing_fusions(fusions, layers),
    }
    target = ctx.output_dir / name
    write_variant_dir(target, onnx_file, ctx.tokenizer, ctx.labels, info)
    return target


def _time(ctx: BuildContext, candidates: Sequence[Candidate]) -> None:
    """Measure `candidates` together and put their speed into their scores."""
    speed = time_variants({c.name: (c.dir, c.use_gpu) for c in candidates}, ctx.test[0], ctx.params)
    for c in candidates:
        c.scores.update(speed[c.name])


def _score(
    ctx: BuildContext,
    structure: Structure,
    pair: Pair,
    target: Path,
    settings: Settings,
    reference: np.ndarray,
) -> Candidate:
    info = json.loads((target / VARIANT_FILE).read_text("utf-8"))
    scores, logits = evaluate_variant(
        target, ctx.test, ctx.labels, ctx.params, use_gpu=pair.use_gpu
    )
    parity = parity_stats(reference, logits)
    dropped = None
    try:
        check_parity(info["name"], parity, **parity_thresholds(ctx.params.compress, pair.reduced))
    except ParityError as exc:
        dropped = f"parity: {exc}"
    floor = ctx.params.gate.min_class_recall
    collapsed = [
        f"{k} {v:.3f}" for k, v in sorted(scores.items()) if k.startswith("recall_") and v < floor
    ]
    if dropped is None and collapsed:
        dropped = f"collapsed: {', '.join(collapsed)} < gate.min_class_recall {floor:g}"
    if dropped is not None:
        shutil.rmtree(target, ignore_errors=True)
    else:
        verdict = {**parity, "passed": True}  # judged here, under the pair's thresholds
        write_json(target / VARIANT_FILE, {**info, "parity": verdict})  # metrics: once timed
    return Candidate(
        name=info["name"],
        structure=structure.name,
        precision=pair.precision,
        runtime=pair.runtime,
        method=info["method"],
        dir=target,
        settings=settings,
        parity=parity,
        scores=scores,
        fusions=info["fusions"],
        lost=info["lost_fusions"],
        use_gpu=pair.use_gpu,
        dropped=dropped,
    )
