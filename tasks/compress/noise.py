"""Known library noise around export and quantization, silenced where it is emitted.

Each ONNX export logs four "torchvision is not installed" warnings and two exporter
UserWarnings/FutureWarnings about internal API changes; each ORT quantization logs "Please
consider to run pre-processing" on the root logger. None of them is actionable here, and they
buried the run's own output. `quiet()` drops exactly those, for the duration of the call only;
anything else still reaches the console.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# (logger name, message prefix) pairs dropped inside quiet()
_LOGGED = (
    ("torch.onnx._internal.exporter._registration", "torchvision is not installed"),
    ("", "Please consider"),  # onnxruntime.quantization, on the root logger
)
_WARNED = (
    r".*isinstance\(treespec, LeafSpec\).*",
    r"# The axis name: .* will not be used",
)


class _Drop(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the known export/quantization noise inside the block."""
    added = []
    for name, prefix in _LOGGED:
        logger, drop = logging.getLogger(name), _Drop(prefix)
        logger.addFilter(drop)
        added.append((logger, drop))
    try:
        with warnings.catch_warnings():
            for pattern in _WARNED:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for logger, drop in added:
            logger.removeFilter(drop)
