"""One node of the two-node check: `python -m tests.stack.node SPEC.json`, run per node.

The spec names the prepared splits, this node's output dir, the process layout overrides
(train.nnodes / node_rank / rdzv_endpoint) and where to write {"run_id"}. Each node has a
TUNELINE_HOME of its own, as separate machines would; MLflow is the stack's tracking server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import REPO


def main(spec_path: str) -> None:
    from tasks.finetune.task import finetune_classifier
    from tuneline.config import load_params

    spec = json.loads(Path(spec_path).read_text())
    params = load_params(REPO, "smoke", spec["overrides"])
    result = finetune_classifier.fn(
        Path(spec["prepared"]),
        params,
        output_dir=Path(spec["output_dir"]),
        project_root=Path(spec["project"]),
    )
    Path(spec["result"]).write_text(json.dumps({"run_id": result.run_id}))


if __name__ == "__main__":
    main(sys.argv[1])
