"""Where a user's data source may live: anywhere but inside a DVC stage output.

DVC deletes a stage's outputs before it runs the stage, so a file kept there would be lost.
The outputs are read from dvc.yaml (tuneline.dvcfile), never from a list kept by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tuneline.dvcfile import output_holding, stage_outputs


def misplaced_source(source: str, output: Path | str, stage: str, outputs: Iterable[str]) -> str:
    """The message for a data source kept where a DVC stage writes (it would be deleted).

    Args:
        source: `data.source` as given.
        output: the stage output holding it, as shown to the user.
        stage: that output's stage.
        outputs: every stage output, as shown (where not to keep data).

    Returns:
        The message, naming a place to keep the data instead.
    """
    return (
        f"data.source '{source}' lies inside {output}, an output of DVC stage '{stage}': DVC "
        "deletes and rewrites it on every run, so the file would be lost. Keep your data "
        f"anywhere outside the stage outputs ({', '.join(outputs)}), e.g. in data/user/, "
        "and point --data (or data.source) there"
    )


def source_location_problem(source: str, root: Path | str) -> str | None:
    """Why `source` must not be read where it is (inside a dvc.yaml stage output), or None.

    Args:
        source: `data.source`: a built-in name or a file path (relative to `root`).
        root: the project directory holding dvc.yaml.

    Returns:
        The message (see `misplaced_source`), or None when `source` may be read where it is.
    """
    held = output_holding(source, root)
    if held is None:
        return None
    base = Path(root).resolve()

    def shown(path: Path) -> str:
        return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)

    output, stage = held
    return misplaced_source(source, shown(output), stage, sorted(map(shown, stage_outputs(base))))
