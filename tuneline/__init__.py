"""tuneline: a local-first pipeline from labelled text to a gated, ONNX-served classifier."""

__version__ = "0.1.0"
