"""The MLflow registry webhook receiver: the UI's alias and tag actions, turned into requests.

MLflow 3 (SQL stores only) POSTs each registry event it was asked for to the receiver, signed
the Standard Webhooks way: header `X-MLflow-Signature: v1,<base64 HMAC-SHA256>` over
`<X-MLflow-Delivery-Id>.<X-MLflow-Timestamp>.<body>` with the shared secret. The receiver
binds 127.0.0.1, checks the signature and the timestamp, keeps only the events it acts on,
answers at once and hands the work to one worker thread (MLflow waits for the answer and
retries on 5xx). What happens then is the caller's: `serve_receiver(on_request=...)`.

Acted on: `model_version_alias.created` for `challenger` (start the gate) and `champion`
(check it was gated), and `model_version_tag.set` of `tuneline.promote = requested`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from tuneline.decisions import REQUEST_TAG, REQUESTED

log = logging.getLogger("tuneline.webhooks")

EVENTS = ("model_version_alias.created", "model_version_tag.set")
WEBHOOK_NAME = "tuneline-gate"
PATH = "/webhook"
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
# Standard Webhooks' replay window: an older (or future) timestamp is refused
MAX_SKEW_S = 300
MAX_BODY_BYTES = 65536  # registry payloads are a few hundred bytes


@dataclass(frozen=True)
class Request:
    """One thing to do for one version: `promote` (run the gate) or `guard` (check champion)."""

    kind: Literal["promote", "guard"]
    name: str
    version: str
    why: str  # the event, for the log and the audit


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The `X-MLflow-Signature` value MLflow sends for this delivery (v1,<base64>)."""
    signed = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(secret: str, headers: Any, body: bytes, now: float) -> str | None:
    """Why a delivery is not authentic, or None when its signature and timestamp hold.

    Args:
        secret: the webhook's shared secret.
        headers: the request headers (a mapping, case-insensitive like http.client's).
        body: the raw body, exactly as received.
        now: the current Unix time.
    """
    sent = headers.get(SIGNATURE_HEADER) or ""
    stamp = headers.get(TIMESTAMP_HEADER) or ""
    delivery = headers.get(DELIVERY_HEADER) or ""
    if not (sent and stamp and delivery):
        return "unsigned (signature, timestamp or delivery id header missing)"
    if not stamp.isdigit() or abs(now - int(stamp)) > MAX_SKEW_S:
        return f"timestamp {stamp!r} outside +-{MAX_SKEW_S} s"
    expected = signature(secret, delivery, stamp, body)
    # a header may list several signatures (key rotation), space-separated
    if not any(hmac.compare_digest(expected, s) for s in sent.split()):
        return "bad signature"
    return None


def classify(payload: dict[str, Any]) -> Request | None:
    """The request an event carries, or None for an event the receiver does not act on.

    Args:
        payload: the parsed body: {"entity", "action", "timestamp", "data"}.
    """
    event = f"{payload.get('entity')}.{payload.get('action')}"
    data = payload.get("data")
    if event not in EVENTS or not isinstance(data, dict):
        return None
    name, version = str(data.get("name", "")), str(data.get("version", ""))
    if event == "model_version_alias.created":
        alias = data.get("alias")
        if alias == "challenger":
            return Request("promote", name, version, f"@challenger set on v{version}")
        if alias == "champion":
            return Request("guard", name, version, f"@champion set on v{version}")
        return None
    if data.get("key") == REQUEST_TAG and data.get("value") == REQUESTED:
        return Request("promote", name, version, f"{REQUEST_TAG}={REQUESTED} on v{version}")
    return None


def _handler(
    secret: str,
    known: Callable[[str, str], str | None],
    work: queue.Queue[Request | None],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

        def _answer(self, status: int, message: str) -> None:
            body = json.dumps({"status": status, "message": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._answer(200, "ok")
            else:
                self._answer(404, "not found")

        def do_POST(self) -> None:
            if self.path != PATH:
                return self._answer(404, "not found")
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY_BYTES:
                return self._answer(413 if length else 400, f"body of {length} bytes")
            body = self.rfile.read(length)
            bad = verify(secret, self.headers, body, time.time())
            if bad is not None:
                log.warning("refused a delivery: %s", bad)
                return self._answer(401, bad)
            try:
                payload = json.loads(body)
            except ValueError:
                return self._answer(400, "body is not JSON")
            request = classify(payload) if isinstance(payload, dict) else None
            if request is None:
                return self._answer(200, "ignored: not an event tuneline acts on")
            unknown = known(request.name, request.version)
            if unknown is not None:
                log.warning("refused %s: %s", request.why, unknown)
                return self._answer(404, unknown)
            work.put(request)
            log.info("accepted: %s (%s)", request.why, request.kind)
            return self._answer(202, f"accepted: {request.kind} {request.name} v{request.version}")

    return Handler


def _work(work: queue.Queue[Request | None], on_request: Callable[[Request], None]) -> None:
    while (request := work.get()) is not None:
        try:
            on_request(request)
        except Exception:
            log.exception("handling %s failed", request.why)


@dataclass
class Receiver:
    """A running receiver: its HTTP server and the worker that handles accepted requests."""

    server: ThreadingHTTPServer
    worker: threading.Thread
    work: queue.Queue[Request | None]

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop accepting, let the worker finish its current request, close the socket."""
        self.server.shutdown()
        self.work.put(None)
        self.worker.join(timeout=timeout_s)
        self.server.server_close()


def serve_receiver(
    port: int,
    secret: str,
    *,
    known: Callable[[str, str], str | None],
    on_request: Callable[[Request], None],
) -> Receiver:
    """Start the receiver on 127.0.0.1:`port` in background threads.

    Args:
        port: the port (0: any free one, then read `Receiver.port`).
        secret: the webhook's shared secret.
        known: (model, version) -> why it is refused (unknown model or version), or None.
        on_request: called for each accepted request, one at a time, in order.

    Returns:
        The running Receiver; `.stop()` stops it.
    """
    work: queue.Queue[Request | None] = queue.Queue()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(secret, known, work))
    server.daemon_threads = True
    worker = threading.Thread(target=_work, args=(work, on_request), daemon=True)
    worker.start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Receiver(server, worker, work)


def register_webhook(tracking_uri: str, url: str, secret: str) -> str:
    """(Re)register the receiver with the MLflow server: one webhook named WEBHOOK_NAME.

    Args:
        tracking_uri: the MLflow server (http://...); a sqlite file store has no webhooks.
        url: the receiver's URL.
        secret: the shared secret.

    Returns:
        The webhook id.
    """
    from mlflow import MlflowClient

    from tuneline.registry import with_retries

    mlc = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    hooks: list[Any] = list(with_retries(lambda: mlc.list_webhooks(max_results=1000)))
    for old in [str(h.webhook_id) for h in hooks if h.name == WEBHOOK_NAME]:
        with_retries(functools.partial(mlc.delete_webhook, old))
    events: list[Any] = list(EVENTS)
    hook = with_retries(
        lambda: mlc.create_webhook(
            name=WEBHOOK_NAME,
            url=url,
            events=events,
            description="tuneline: @challenger / tuneline.promote start the gate; "
            "@champion is checked against it",
            secret=secret,
        )
    )
    return str(hook.webhook_id)
