"""The one summary screen printed at the end of `tuneline run`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PipelineSummary:
    """What a run produced, as references and small numbers."""

    data_md5: dict[str, str]
    split_sizes: dict[str, int]
    data_counts: dict[str, int]
    stages_ran: dict[str, bool]
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        lines = ["", "tuneline run summary", "=" * 20, "data version (md5 from dvc.lock):"]
        for split, md5 in sorted(
            self.data_md5.items(),
            key=lambda kv: (
                ("train", "val", "test").index(kv[0]) if kv[0] in ("train", "val", "test") else 9
            ),
        ):
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
            lines.append(f"{key}: {value}")
        return "\n".join(lines)
