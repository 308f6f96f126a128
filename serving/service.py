"""The BentoML service that serves an ONNX variant: POST /predict with adaptive batching.

Model directory: $TUNELINE_MODEL_DIR, else `model/` bundled beside this package in the Bento
(tasks/release/package.py puts it there). Limits: $TUNELINE_SERVE_CONFIG, else the bundled
`serve_config.json`, which the package step writes from params.serve. There is no fallback:
params.yaml is their one source, so a missing file or limit stops the service at import.

BentoML provides /livez, /healthz, /readyz (ready once the model is loaded, via __is_ready__)
and /metrics, which already holds request latency histograms and the adaptive batch size
histogram; this module adds an input length histogram, a predicted-label counter and the
result cache's hits, misses and size (serving/cache.py).
Per-request work BentoML does besides serving (an access log line, OpenTelemetry spans) is off
unless serve.access_log / serve.tracing turn it on; serve.workers processes each run the
runtime on serve.num_threads threads (package time resolves both from the cores).
Large jobs go to the /bulk task endpoint (serving/bulk.py): submit JSONL, poll, fetch; the
answers are /predict's, computed in batches of serve.max_batch_size through the same cache.
Requests pass two guards (serving/guard.py): RouteGuard outside all of BentoML's middlewares
(GuardedService), RequestGuard inside them (add_asgi_middleware).
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import InvalidArgument
from pydantic import BaseModel, Field, StringConstraints

from serving.bulk import BulkInputError, chunks, read_jsonl
from serving.cache import ResultCache, model_version, prometheus_exporter
from serving.guard import RequestGuard, RouteGuard, routed_paths
from serving.predictor import OnnxTextClassifier

BUNDLE_ROOT = Path(__file__).resolve().parent.parent
SERVE_CONFIG = "serve_config.json"
# The params.serve keys this service reads (host and port are the server's): serve_config()
# returns only these, so reading one not listed fails at once, not on a rare code path.
LIMITS = (
    "max_texts",
    "max_chars",
    "timeout_s",
    "max_batch_size",
    "max_latency_ms",
    "max_concurrency",
    "workers",
    "num_threads",
    "max_header_bytes",
    "cache_size",
    "access_log",
    "tracing",
    "bulk_max_texts",
    "bulk_max_bytes",
)
LENGTH_BUCKETS = (16, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


class ServeConfigError(RuntimeError):
    """The serve config file is missing or lacks a limit (the message names which)."""


def serve_config() -> dict[str, Any]:
    """The limits of this service, read from $TUNELINE_SERVE_CONFIG or the bundled file.

    Returns:
        Each key of LIMITS and its value in the file (other keys in it are not limits).

    Raises:
        ServeConfigError: the file does not exist, or lacks one of LIMITS (all named).
    """
    path = Path(os.environ.get("TUNELINE_SERVE_CONFIG") or BUNDLE_ROOT / SERVE_CONFIG)
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ServeConfigError(
            f"serve config {path} not found: the package step writes it from params.serve; "
            "serving from source, point $TUNELINE_SERVE_CONFIG at one"
        ) from exc
    missing = [key for key in LIMITS if key not in config]
    if missing:
        keys = ", ".join(f"'serve.{key}'" for key in missing)
        raise ServeConfigError(f"serve config {path}: missing key {keys}")
    return {key: config[key] for key in LIMITS}


def model_dir() -> Path:
    return Path(os.environ.get("TUNELINE_MODEL_DIR") or BUNDLE_ROOT / "model")


# Read once when BentoML imports the service: the decorators and the request schema need the
# limits as values (a small JSON read; no model is loaded here).
CONFIG = serve_config()

Texts = Annotated[
    list[Annotated[str, StringConstraints(max_length=int(CONFIG["max_chars"]))]],
    Field(min_length=1, max_length=int(CONFIG["max_texts"])),
]

# A bulk job: JSONL text (serving/bulk.py); its body is capped at serve.bulk_max_bytes.
BulkJob = Annotated[str, StringConstraints(min_length=1, max_length=int(CONFIG["bulk_max_bytes"]))]
BULK_ROUTE = "/bulk"


# serve.max_batch_size 1 means "no adaptive batching": BentoML refuses a batchable API with
# max_batch_size < 2 (the service would not even import), so batching is switched off instead.
BATCHING: dict[str, Any] = (
    {
        "batchable": True,
        "max_batch_size": int(CONFIG["max_batch_size"]),
        "max_latency_ms": int(CONFIG["max_latency_ms"]),
    }
    if int(CONFIG["max_batch_size"]) > 1
    else {"batchable": False}
)


# Tracing off: every URL excluded, so BentoML's OpenTelemetry middleware (always installed)
# passes requests straight through instead of opening spans nobody samples. On: BentoML's
# tracing settings (exporter, sample rate) from $BENTOML_CONFIG apply.
TRACING: dict[str, Any] = {} if CONFIG["tracing"] else {"excluded_urls": ".*"}


class PredictionOut(BaseModel):
    label: str
    label_id: int
    probabilities: dict[str, float]


_METRICS: dict[str, Any] = {}


def _metrics() -> dict[str, Any]:
    # Created in the worker (not at import) so prometheus_client sees BentoML's multiprocess
    # directory; cached because a second registration of a name raises.
    if not _METRICS:
        from prometheus_client import Counter, Histogram

        _METRICS["length"] = Histogram(
            "tuneline_input_length_chars",
            "Characters per input text (a drift signal)",
            buckets=LENGTH_BUCKETS,
        )
        _METRICS["label"] = Counter(
            "tuneline_predicted_label",
            "Predicted labels (a drift signal)",
            labelnames=["label"],
        )
        _METRICS["cache"] = prometheus_exporter()
    return _METRICS


class GuardedService(bentoml.Service[Any]):
    """BentoML's Service with its ASGI app wrapped in a RouteGuard.

    BentoML's HTTP metrics middleware is the outermost of the app's middlewares, outside
    those added with add_asgi_middleware, and it starts a series for every path it sees; only
    a wrapper around the app it builds can answer unknown paths before it.
    """

    def to_asgi(self, is_main: bool = True) -> Any:
        app = super().to_asgi(is_main)
        return RouteGuard(
            app, is_routed=routed_paths(app), max_header_bytes=int(CONFIG["max_header_bytes"])
        )


@bentoml.service(
    name="tuneline_classifier",
    service_class=GuardedService,
    # BentoML's own timeout answers 504; ours (RequestGuard, 408) fires first.
    traffic={
        "timeout": int(CONFIG["timeout_s"]) + 5,
        "max_concurrency": int(CONFIG["max_concurrency"]),
    },
    workers=int(CONFIG["workers"]),
    logging={"access": {"enabled": bool(CONFIG["access_log"])}},
    tracing=TRACING,
)
class Classifier:
    """Text classifier over the bundled ONNX variant."""

    def __init__(self) -> None:
        self.model = OnnxTextClassifier(model_dir(), num_threads=int(CONFIG["num_threads"]))
        self.metrics = _metrics()
        self.cache: ResultCache[PredictionOut] = ResultCache(
            int(CONFIG["cache_size"]), model_version(model_dir()), self.metrics["cache"]
        )
        # Everything loaded so far lives as long as the worker: move it out of the collector's
        # sight, so full collections stay short instead of pausing every request in flight.
        gc.collect()
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.model is not None

    @bentoml.api(route="/predict", **BATCHING)
    def predict(self, texts: Texts) -> list[PredictionOut]:
        """Classify texts: one {label, label_id, probabilities} per text, in order."""
        return self._answer(texts)

    @bentoml.task(route=BULK_ROUTE)
    def bulk(self, jsonl: BulkJob) -> list[PredictionOut]:
        """A large job as a task: POST /bulk/submit {"jsonl": one {"text": ...} per line}, then
        GET /bulk/status and /bulk/get?task_id=...; the answers of /predict, in order."""
        try:
            texts = read_jsonl(
                jsonl, max_texts=int(CONFIG["bulk_max_texts"]), max_chars=int(CONFIG["max_chars"])
            )
        except BulkInputError as exc:
            raise InvalidArgument(str(exc)) from None  # BentoML answers it with a 400
        answers: list[PredictionOut] = []
        for chunk in chunks(texts, max(int(CONFIG["max_batch_size"]), 1)):
            answers += self._answer(list(chunk))
        return answers

    def _answer(self, texts: list[str]) -> list[PredictionOut]:
        answers = self.cache.answer(texts, self._compute)
        for text, answer in zip(texts, answers, strict=True):
            self.metrics["length"].observe(len(text))
            self.metrics["label"].labels(label=answer.label).inc()
        return answers

    def _compute(self, texts: list[str]) -> list[PredictionOut]:
        return [
            PredictionOut(label=p.label, label_id=p.label_id, probabilities=p.probabilities)
            for p in self.model.predict(texts)
        ]


# bentoml.service turns the class into a Service object; mypy still sees the class.
Classifier.add_asgi_middleware(  # type: ignore[attr-defined]
    RequestGuard,
    timeout_s=float(CONFIG["timeout_s"]),
    # Worst legal body: every text at max length, JSON-escaped (x6 for \uXXXX), plus slack.
    max_body_bytes=int(CONFIG["max_texts"]) * (int(CONFIG["max_chars"]) * 6 + 8) + 4096,
    # A bulk job's whole body, {"jsonl": ...}: the task's direct route and its submit.
    body_bytes_by_path=dict.fromkeys(
        (BULK_ROUTE, f"{BULK_ROUTE}/submit"), int(CONFIG["bulk_max_bytes"])
    ),
)
