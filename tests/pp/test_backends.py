"""Encoder backends of ``hs.pp.features``: ONNX Runtime gives torch's features on real patches; clear refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from spatialdata import SpatialData

import hist_sd as hs
from hist_sd._core import _runtime
from hist_sd.encoders import _onnx

pytest.importorskip("onnxruntime")


def _spots(b4, n: int = 24) -> SpatialData:
    t = b4.tables["table"]
    meta = t.uns["hist_sd"]
    return SpatialData(
        images={meta["image_key"]: b4.images[meta["image_key"]]},
        shapes={meta["shapes_key"]: b4.shapes[meta["shapes_key"]]},
        tables={"table": t[np.linspace(0, t.n_obs - 1, n).astype(int)].copy()},
    )


@pytest.fixture(scope="module")
def by_backend(b4, tmp_path_factory) -> dict[str, SpatialData]:
    out = {}
    for backend in ("torch", "onnx", "auto"):
        sd = _spots(b4)
        hs.pp.features(sd, backend=backend, batch_size=8, progress=False)
        out[backend] = sd
    return out


def test_onnx_features_equal_torch_on_real_patches(by_backend) -> None:
    ref = by_backend["torch"].tables["table"].obsm["X_hist"]
    got = by_backend["onnx"].tables["table"].obsm["X_hist"]
    assert np.abs(got - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 1 - 1e-6
    params = {k: v.tables["table"].uns["X_hist"]["params"]["backend"] for k, v in by_backend.items()}
    assert params == {"torch": "torch", "onnx": "onnx", "auto": "onnx"}  # auto: ONNX Runtime on this CPU
    np.testing.assert_array_equal(by_backend["auto"].tables["table"].obsm["X_hist"], got)


def test_export_is_cached(by_backend) -> None:
    enc = hs.pp.get_encoder("efficientnet-lite0")
    path = _onnx.export_path(enc)
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    _onnx.OnnxEncoder(enc)
    assert path.stat().st_mtime_ns == stamp  # loaded, not exported again
    damaged = Path(str(path))
    damaged.write_bytes(b"not onnx")
    runner = _onnx.OnnxEncoder(enc)  # a damaged cache file is exported again
    assert runner(np.zeros((1, 3, 224, 224), np.float32)).shape == (1, 1280)


def test_missing_backend_or_unsupported_precision_is_refused(b4, monkeypatch) -> None:
    sd = _spots(b4, 4)
    with pytest.raises(ValueError, match="`backend` must be one of"):
        hs.pp.features(sd, backend="tensorrt", progress=False)
    with pytest.raises(ValueError, match="`backend='onnx'` runs in float32"):
        hs.pp.features(sd, backend="onnx", precision="bfloat16", progress=False)
    monkeypatch.setattr(_onnx, "onnx_available", lambda: False)
    with pytest.raises(ImportError, match=r"`backend='onnx'` needs ONNX Runtime.*pip install"):
        hs.pp.features(sd, backend="onnx", progress=False)
    hs.pp.features(sd, progress=False)  # auto without onnxruntime: torch
    assert sd.tables["table"].uns["X_hist"]["params"]["backend"] == "torch"
    # bfloat16 where torch would emulate it: refused, not a silent 25x slower path
    monkeypatch.setattr(_runtime, "fast_bf16", lambda device: False)
    with pytest.raises(ValueError, match=r"precision='bfloat16'.*not native.*emulate"):
        hs.pp.features(sd, precision="bfloat16", overwrite=True, progress=False)
