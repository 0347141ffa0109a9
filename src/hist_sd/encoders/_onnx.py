"""ONNX Runtime backend for patch encoders on the CPU (the optional ``onnx`` extra).

A patch encoder is exported once to ONNX (cached under ``$HIST_SD_CACHE_DIR/onnx``, keyed by the encoder, its
weights' SHA-256, its input size and the torch / hist_sd versions) and run by ONNX Runtime with one intra-op thread
per call, calls in parallel on the cores, as the torch path does. ONNX Runtime's fused depthwise / pointwise
convolution kernels run EfficientNet-Lite0 faster than torch's on CPUs; features agree with torch's to float
rounding (~1e-5, checked by the tests). GPUs keep the torch path.
"""

from __future__ import annotations

import hashlib
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hist_sd._core._files import atomic_path, cache_root

if TYPE_CHECKING:
    from hist_sd.encoders._registry import Encoder

logger = logging.getLogger("hist_sd")

__all__ = ["BACKENDS", "OnnxEncoder", "onnx_available", "resolve_backend"]

#: Values of ``backend=`` in :func:`hist_sd.pp.features`.
BACKENDS = ("auto", "torch", "onnx")
_OPSET = 17
_INSTALL = "pip install 'hist_sd[onnx]' (onnxruntime and onnx)"


def onnx_available() -> bool:
    """Whether ONNX Runtime and the ONNX exporter's dependency are importable."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, enc: Encoder, *, device_type: str, precision: str) -> str:
    """``"torch"`` or ``"onnx"`` for ``backend=`` (``"auto"``: ONNX Runtime on the CPU when installed).

    ``"auto"`` picks ONNX Runtime for a float32 run on the CPU of an encoder with a weights file (so its export
    can be cached) when onnxruntime is installed, else torch. ``"onnx"`` asked for explicitly is refused with a
    clear message where it cannot run (not installed, a GPU, bfloat16).
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}.")
    if backend == "torch":
        return "torch"
    if backend == "auto":
        usable = device_type == "cpu" and precision == "float32" and enc.weights_sha256 is not None
        return "onnx" if usable and onnx_available() else "torch"
    if not onnx_available():
        raise ImportError(f"`backend='onnx'` needs ONNX Runtime, which is not installed: {_INSTALL}.")
    if device_type != "cpu":
        raise ValueError(f"`backend='onnx'` runs on the CPU; the encoder is on {device_type!r} (use backend='torch').")
    if precision != "float32":
        raise ValueError(f"`backend='onnx'` runs in float32; got precision={precision!r} (use backend='torch').")
    return "onnx"


def _export_key(enc: Encoder) -> str:
    import torch

    try:
        own = version("hist_sd")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        own = "dev"
    parts = [enc.name, str(enc.weights_sha256), str(enc.input_size), repr(sorted(enc.extra.items())),
             torch.__version__, own, str(_OPSET)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def export_path(enc: Encoder, cache_dir: str | Path | None = None) -> Path:
    """Where the ONNX export of ``enc`` is cached."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in enc.name)
    return cache_root(cache_dir) / "onnx" / f"{safe}-{_export_key(enc)}.onnx"


def export_onnx(enc: Encoder, path: Path) -> Path:
    """Export ``enc.module`` (batch dimension dynamic) to ``path``, atomically; returns ``path``."""
    import copy

    import torch

    module = copy.deepcopy(enc.module).to("cpu").eval()
    module.to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(2, 3, enc.input_size, enc.input_size)
    with atomic_path(path, overwrite=True, what="onnx export") as tmp, torch.no_grad():
        tmp.parent.mkdir(parents=True, exist_ok=True)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings on shape-dependent Python branches (static here)
            torch.onnx.export(module, (dummy,), str(tmp), input_names=["x"], output_names=["features"],
                              dynamic_axes={"x": {0: "n"}, "features": {0: "n"}}, opset_version=_OPSET,
                              dynamo=False)
    logger.info("%s: exported to ONNX at %s", enc.name, path)
    return path


#: ONNX Runtime sessions of this process by export path (building one optimises the graph: ~0.5 s, once).
_SESSIONS: dict[str, Any] = {}


def _session(path: Path) -> Any:
    """The (cached) single-threaded ONNX Runtime session of the export at ``path``."""
    import onnxruntime as ort

    key = str(path)
    stamp = path.stat().st_mtime_ns
    cached = _SESSIONS.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one thread per call; calls run in parallel, one per core
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(key, opts, providers=["CPUExecutionProvider"])
    _SESSIONS[key] = (stamp, session)
    return session


class OnnxEncoder:
    """An encoder run by ONNX Runtime: ``(n, 3, s, s)`` float32 NCHW -> ``(n, dim)`` float32.

    Parameters
    ----------
    enc
        The torch encoder to export (once; the export is cached).
    cache_dir
        Cache folder (default ``$HIST_SD_CACHE_DIR`` or ``~/.cache/hist_sd``).
    """

    def __init__(self, enc: Encoder, *, cache_dir: str | Path | None = None) -> None:
        path = export_path(enc, cache_dir)
        if not path.is_file():
            export_onnx(enc, path)
        try:
            self.session = _session(path)
        except Exception as err:  # noqa: BLE001 - ONNX Runtime raises its own types: a damaged cache, export again
            logger.warning("%s: cached ONNX export %s could not be loaded (%s); exporting again.", enc.name, path, err)
            _SESSIONS.pop(str(path), None)
            export_onnx(enc, path)
            self.session = _session(path)
        self.path = path
        self.dim = enc.dim

    def __call__(self, x: Any) -> np.ndarray:
        """Features of a batch (a torch tensor or array ``(n, 3, s, s)``), as float32 ``(n, dim)``."""
        arr = x.contiguous().numpy() if hasattr(x, "contiguous") else np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(None, {"x": arr})[0]
