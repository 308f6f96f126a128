"""Promotion from the MLflow UI: the gate service `tuneline up` starts, and `tuneline watch`.

The service (`python -m flows.gate_service --root R`) is one process on 127.0.0.1: the MLflow
webhook receiver (tuneline/webhooks.py), registered with `tuneline up`'s MLflow server, and
the Prefect deployment `promotion/ui-promotion` it starts runs of, served here one at a time
(visible in the Prefect UI). `@challenger` or `tuneline.promote = requested` on a version
starts the gate for it; `@champion` set on a version is checked against the gate
(tasks/release/guard.py). `tuneline watch` does the same by polling, where there are no
webhooks (the embedded sqlite store).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from tasks.release.guard import guard_champion
from tasks.release.requests import promotion_wanted, unknown
from tuneline.config import Params, load_params
from tuneline.services import Service
from tuneline.webhooks import PATH, Request

DEPLOYMENT = "ui-promotion"
FLOW = "promotion"
SERVICE = "gate"
log = logging.getLogger("tuneline.gate_service")


def handle(request: Request, root: Path, params: Params) -> None:
    """Act on one accepted receiver request: start the promotion deployment, or guard."""
    from prefect.deployments import run_deployment

    if request.kind == "guard":
        result = guard_champion(request.name, params.gate)
        log.info(
            "%s: champion guard %s (champion v%s)", request.why, result.outcome, result.champion
        )
        return
    skip = promotion_wanted(request.name, request.version)
    if skip is not None:
        log.info("%s: not started: %s", request.why, skip)
        return
    run = run_deployment(
        f"{FLOW}/{DEPLOYMENT}",
        parameters={"version": request.version, "project_root": str(root)},
        timeout=0,  # queued for the runner below; the receiver does not wait
        tags=["tuneline", "ui-promotion"],
        as_subflow=False,
    )
    log.info("%s: started flow run %s", request.why, getattr(run, "name", run))


def main(argv: list[str] | None = None) -> None:
    """The gate service: deployment applied, webhook registered, receiver up, then serve."""
    from prefect import serve

    from flows.promotion import promotion_flow
    from tuneline.settings import get_settings, use_project
    from tuneline.webhook_keys import webhook_secret
    from tuneline.webhooks import register_webhook, serve_receiver

    parser = argparse.ArgumentParser(prog="python -m flows.gate_service")
    parser.add_argument("--root", type=Path, required=True)
    root = parser.parse_args(argv).root.resolve()
    # Prefect configures the root logger on import: ours get a handler of their own
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    ours = logging.getLogger("tuneline")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False  # else Prefect's handler prints each line a second time
    use_project(root)
    params = load_params(root)
    secret = webhook_secret(get_settings().root)
    deployment: Any = promotion_flow.to_deployment(
        name=DEPLOYMENT,
        parameters={"project_root": str(root)},
        description="The gate for one version, started from the MLflow UI (@challenger).",
        tags=["tuneline", "promotion"],
    )
    deployment.apply()
    port = params.gate.webhook_port
    hook = register_webhook(get_settings().tracking_uri, f"http://127.0.0.1:{port}{PATH}", secret)
    receiver = serve_receiver(
        port,
        secret,
        known=lambda name, version: unknown(params, name, version),
        on_request=lambda request: handle(request, root, params),
    )
    log.info("receiver on 127.0.0.1:%s%s (webhook %s)", receiver.port, PATH, hook)
    try:
        serve(deployment, limit=1, print_starting_message=False)  # one gate at a time
    finally:
        receiver.stop()


def start_gate_service(root: Path, params: Params, timeout_s: float) -> Service:
    """Start the gate service beside `tuneline up`'s servers (recorded, so `down` stops it).

    Args:
        root: the project; params: its settings (gate.webhook_port); timeout_s: wait bound.

    Returns:
        Its service record.
    """
    from tuneline.services import add_service, running
    from tuneline.settings import get_settings

    home = get_settings().root
    servers = running(home)
    url = f"http://127.0.0.1:{params.gate.webhook_port}"
    env = dict(os.environ)
    env["PREFECT_API_URL"] = f"{servers['prefect'].url}/api"
    env["TUNELINE_MLFLOW_TRACKING_URI"] = servers["mlflow"].url
    args = [sys.executable, "-m", "flows.gate_service", "--root", str(root.resolve())]
    return add_service(home, Service(SERVICE, url, f"{url}/health", 0), args, env, timeout_s)


if __name__ == "__main__":
    main()
