"""The two runtimes that run a variant's model.onnx: ONNX Runtime and OpenVINO.

ONNX Runtime runs on the CPU, or on CUDA with `use_gpu`. OpenVINO runs on the CPU; its
`precision` is the inference precision hint: "bf16" runs the FP32 graph in BF16 on CPUs with
AVX-512 BF16 or AMX, and an INT8 QDQ graph in INT8 kernels with BF16 between them. Both are
set up so every variant is timed alike: a fixed thread count, one stream. Bundled into the
Bento with serving/predictor.py, which picks one by the variant's variant.json.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

OUTPUT_NAME = "logits"  # what every exported graph returns (serving/predictor.py re-exports it)
ONNXRUNTIME, OPENVINO = "onnxruntime", "openvino"
RUNTIMES = (ONNXRUNTIME, OPENVINO)


def cuda_available() -> bool:
    """Whether ONNX Runtime can run on a GPU here (the FP16 variant needs it).

    Returns:
        True when the CUDA execution provider is available.
    """
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def openvino_bf16() -> bool:
    """Whether OpenVINO can compute in BF16 on this CPU (AVX-512 BF16 or AMX).

    Returns:
        True when openvino is installed and lists BF16 among the CPU's capabilities.
    """
    try:
        import openvino as ov
    except ImportError:
        return False
    return "bf16" in precision_hints(ov.Core())


def runtime_available(runtime: str) -> bool:
    """Whether `runtime` can be loaded here.

    Args:
        runtime: "onnxruntime" or "openvino".

    Returns:
        True when its Python package imports.
    """
    import importlib.util

    return runtime in RUNTIMES and importlib.util.find_spec(runtime) is not None


def make_openvino(
    onnx_path: Path | str, num_threads: int, precision: str
) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """Compile `onnx_path` for OpenVINO's CPU plugin; returns feeds -> logits.

    Args:
        onnx_path: the model file (OpenVINO reads ONNX, com.microsoft fused ops included).
        num_threads: inference threads (0 = let OpenVINO decide), one stream, latency hint,
            no CPU pinning: pinned, every process's inferring thread ran on the first CPU of
            its mask, so two Bento workers shared one core.
        precision: "bf16" sets the BF16 inference precision hint; anything else runs f32
            between the graph's own (e.g. INT8 QDQ) operations.

    Returns:
        A function safe to call from several threads (one infer request per thread).
    """
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "ENABLE_CPU_PINNING": False,
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
    }
    if precision == "bf16" and "bf16" not in precision_hints(core):
        raise RuntimeError("OpenVINO cannot compute in BF16 on this CPU (no AVX-512 BF16/AMX)")
    if num_threads > 0:
        config["INFERENCE_NUM_THREADS"] = num_threads
    compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
    names = {port.get_any_name() for port in compiled.inputs}
    output = compiled.output(OUTPUT_NAME)
    local = threading.local()

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        # infer() copies its outputs (share_outputs=False): the next call cannot overwrite them
        result: np.ndarray = request.infer({k: v for k, v in feeds.items() if k in names})[output]
        return result

    return run


def precision_hints(core: Any) -> set[str]:
    """The inference precisions OpenVINO's CPU plugin offers here ("f32", "bf16", ...)."""
    caps = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return {"f32"} | ({"bf16"} if "BF16" in caps else set())


def make_session(onnx_path: Path | str, num_threads: int, *, use_gpu: bool = False) -> Any:
    """An InferenceSession with a fixed thread count, so every variant is timed alike.

    Args:
        onnx_path: the model file.
        num_threads: intra-op threads (0 = let ORT decide); inter-op is pinned to 1.
        use_gpu: run on CUDA (ORT falls back to CPU for unsupported nodes).

    Returns:
        The onnxruntime.InferenceSession.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, num_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if use_gpu:
        providers = ["CUDAExecutionProvider", *providers]
    return ort.InferenceSession(str(onnx_path), options, providers=providers)
