"""The one summary screen printed at the end of `tuneline run`.

The model half is read from the results the fine-tune, compress and release tasks return.
tuneline/ cannot import those (tasks/ is above it), so it names what it reads as protocols:
mypy checks the flow's call against the real result types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tuneline.config import Params

BASELINE = "parent_fp32_ort"  # the speed-up reference among the compression candidates


class Tuned(Protocol):
    """What the summary reads of a fine-tune result (tasks.finetune.task.FinetuneResult)."""

    @property
    def run_id(self) -> str: ...

    @property
    def metrics(self) -> Mapping[str, float]: ...

    @property
    def budget(self) -> str: ...


class Variant(Protocol):
    """What it reads of one scored variant (tasks.compress.task.VariantRef)."""

    @property
    def name(self) -> str: ...

    @property
    def method(self) -> str: ...

    @property
    def metrics(self) -> Mapping[str, float]: ...


class Compressed(Protocol):
    """What it reads of a compression result (tasks.compress.task.CompressResult)."""

    @property
    def chosen(self) -> Variant: ...

    @property
    def variants(self) -> Sequence[Variant]: ...

    @property
    def rejected(self) -> Mapping[str, str]: ...

    @property
    def pareto_md(self) -> str: ...


class Released(Protocol):
    """What it reads of a promotion result (tasks.release.promote.PromotionResult)."""

    @property
    def outcome(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def champion(self) -> str | None: ...

    @property
    def reasons(self) -> Sequence[str]: ...

    @property
    def bento_tag(self) -> str | None: ...


@dataclass(frozen=True)
class PipelineSummary:
    """What a run produced, as references and small numbers."""

    data_md5: dict[str, str]
    split_sizes: dict[str, int]
    data_counts: dict[str, int]
    stages_ran: dict[str, bool]
    extra: dict[str, str] = field(default_factory=dict)
    brief: dict[str, str] = field(default_factory=dict)  # console forms of long `extra` lines

    def with_extra(
        self, extra: Mapping[str, str], brief: Mapping[str, str] | None = None
    ) -> PipelineSummary:
        """This summary with more lines (later keys win) and their short console forms."""
        return PipelineSummary(
            self.data_md5,
            self.split_sizes,
            self.data_counts,
            self.stages_ran,
            {**self.extra, **extra},
            {**self.brief, **(brief or {})},
        )

    def render(self, brief: bool = False) -> str:
        """The screen, as text: in full (the run log), or brief (the console)."""
        lines = ["", "tuneline run summary", "=" * 20]
        splits = sorted(
            self.data_md5.items(),
            key=lambda kv: (
                ("train", "val", "test").index(kv[0]) if kv[0] in ("train", "val", "test") else 9
            ),
        )
        if brief:  # md5 prefixes; the full ones are in the run log and dvc.lock
            lines.append(
                "data version (md5 from dvc.lock): "
                + ", ".join(f"{k} {self.split_sizes.get(k, 0)} rows {m[:8]}" for k, m in splits)
            )
        else:
            lines.append("data version (md5 from dvc.lock):")
            for split, md5 in splits:
                lines.append(f"  {split:5s} {self.split_sizes.get(split, 0):6d} rows  {md5}")
        counts = self.data_counts
        lines.append(
            "cleaning: "
            f"{counts.get('rows_in', 0)} rows in, {counts.get('dropped_empty', 0)} empty and "
            f"{counts.get('dropped_duplicate', 0)} duplicate dropped, "
            f"{counts.get('augmented_rows', 0)} augmented rows added to train"
        )
        ran = [name for name, did in self.stages_ran.items() if did]
        lines.append(
            "stages run: "
            + (", ".join(ran) if ran else "none (DVC: data and pipelines are up to date)")
        )
        for key, value in self.extra.items():
            shown = self.brief.get(key, value) if brief else value
            if shown:  # a brief form "" leaves the line to the run log
                lines.append(f"{key}: {shown}")
        return "\n".join(lines)


def describe_release(
    tuned: Tuned, compressed: Compressed, released: Released, params: Params
) -> dict[str, str]:
    """The model half of the summary screen, from the small results the tasks returned.

    Args:
        tuned: the fine-tune result; its metrics are the PyTorch model's on the test split.
        compressed: the compression result (chosen variant, every variant, the rejected).
        released: the release outcome (promoted, unchanged, held, lost_race).
        params: settings (where `tuneline serve` listens).

    Returns:
        Summary lines by title, in screen order.
    """
    # the parent's own FP32 graph in ONNX Runtime: what a plain export would serve
    fp32 = next((v for v in compressed.variants if v.name == BASELINE), compressed.chosen)
    chosen = compressed.chosen
    base_p95 = fp32.metrics.get("latency_p95_ms")
    chosen_p95 = chosen.metrics.get("latency_p95_ms")
    base_rate, rate = fp32.metrics.get("throughput"), chosen.metrics.get("throughput")
    speedup = (
        f"{base_p95 / chosen_p95:.2f}x lower p95 and {rate / base_rate:.2f}x the rows/s "
        f"of {BASELINE}"
        if base_p95 and chosen_p95 and base_rate and rate
        else "n/a"
    )
    m = tuned.metrics
    serve = params.serve
    gate = f"{released.outcome}: " + " | ".join(released.reasons)
    champion = f"{released.name} version {released.champion} (bento {released.bento_tag})"
    if released.outcome == "held":  # a rolled-back candidate: not gated, champion not moved
        gate = held_gate(released.reasons)
        champion += ", unchanged"
    return {
        "fine-tune run": tuned.run_id,
        "fine-tune budget": tuned.budget,
        "test metrics (PyTorch)": (
            f"accuracy {m.get('accuracy', 0):.4f}, macro-F1 {m.get('macro_f1', 0):.4f} "
            f"(majority baseline {tuned.metrics.get('majority_baseline', float('nan')):.4f})"
        ),
        "chosen variant": (
            f"{chosen.name} ({chosen.method}), accuracy {chosen.metrics.get('accuracy', 0):.4f}, "
            f"p95 {chosen_p95 or float('nan'):.2f} ms at batch 1, "
            f"{rate or float('nan'):.1f} rows/s at the serving batch; {speedup}"
        ),
        **trust_lines(chosen.metrics),
        "tuning": tuning_line(),
        "other candidates": "; ".join(f"{k}: {v}" for k, v in compressed.rejected.items())
        or "none",
        "gate": gate,
        "champion": champion,
        "pareto table (candidates, same test split)": "\n" + compressed.pareto_md.strip(),
        "MLflow UI": (
            f"tuneline up  (or: mlflow ui --backend-store-uri {tracking_uri()} "
            "--host 127.0.0.1 --port 5000)"
        ),
        "serve": f"tuneline serve  ->  curl -s -X POST http://{serve.host}:{serve.port}/predict "
        "-H 'Content-Type: application/json' -d '{\"texts\": [\"hello there\"]}'",
    }


def held_gate(reasons: Sequence[str]) -> str:
    """The gate line of a rolled-back candidate: not gated, champion not moved."""
    return "held, not gated: " + " | ".join(reasons)


def brief_release(tuned: Tuned, compressed: Compressed, released: Released) -> dict[str, str]:
    """One short line each for the candidates not chosen and the gate (the console's forms).

    Kept whole: a dropped candidate's reason and every check that did not pass; counted: the
    candidates only slower, dominated or skipped, and the checks that passed.
    """
    kinds: dict[str, int] = {}
    dropped = []
    for name, reason in compressed.rejected.items():
        kind = reason.split(":", 1)[0]
        if kind in ("inside budget but slower", "dominated", "skipped"):
            kinds[kind] = kinds.get(kind, 0) + 1
        else:
            dropped.append(f"{name} {reason}")
    counted = [f"{n} {kind}" for kind, n in kinds.items()]
    others = f"{len(compressed.rejected)}: " + "; ".join(
        ([f"dropped {'; '.join(dropped)}"] if dropped else []) + counted
    )
    passed = [r for r in released.reasons if r.startswith("PASS")]
    rest = [r for r in released.reasons if not r.startswith("PASS")]
    gate = f"{released.outcome}: {len(passed)} checks passed" + "".join(f" | {r}" for r in rest)
    if released.outcome == "held":
        gate = held_gate(released.reasons)
    tuning = tuning_line()
    budget = tuned.budget.split(" (", 1)[0] + "; " + tuned.budget.rsplit("; ", 1)[-1]
    return {
        "fine-tune budget": budget if "; " in tuned.budget else tuned.budget,
        "tuning": "" if tuning.startswith("not run") else tuning,
        "other candidates": (others + " (each reason in the run log)")
        if compressed.rejected
        else "none",
        "gate": gate,
    }


def trust_lines(metrics: Mapping[str, float]) -> dict[str, str]:
    """The chosen variant's behaviour and calibration figures (tasks/behaviour), in words."""
    rates = [
        f"{k.removeprefix('invariance_')} {v:.3f}"
        for k, v in sorted(metrics.items())
        if k.startswith("invariance_")
    ]
    if not rates:
        return {"behaviour": "not measured"}
    nan = float("nan")
    return {
        "behaviour (invariance rates)": ", ".join(rates)
        + f"; users' directional cases held {metrics.get('directional_user', nan):.3f}",
        "calibration (test ECE)": (
            f"{metrics.get('ece_uncalibrated', nan):.4f} -> {metrics.get('ece', nan):.4f} "
            f"with the temperature {metrics.get('temperature', nan):.3f} fitted on val (served)"
        ),
    }


TUNE_RECORD = "tune-last.json"  # written under the state dir by `tuneline tune`


def tuning_line() -> str:
    """What the last `tuneline tune` of this project found, or that none ran."""
    import json

    from tuneline.settings import get_settings

    path = get_settings().root / TUNE_RECORD
    if not path.is_file():
        return "not run (`tuneline tune` searches the params tune: ranges; never in make run)"
    last = json.loads(path.read_text(encoding="utf-8"))
    base = last.get("baseline")
    before = "n/a" if base is None else f"{base:.4f}"
    return (
        f"study {last['study']} ({last['trials']} trials, {last['finished']}): val macro-F1 "
        f"{before} at the values it started from -> {last['best_value']:.4f}, best values "
        "written to params.yaml"
    )


def tracking_uri() -> str:
    """The MLflow store this project's runs are in."""
    from tuneline.settings import get_settings

    return get_settings().tracking_uri
