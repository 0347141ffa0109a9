"""hs.tl.explain: Grad-CAM of a HiST model trained on real B4 image features, per layer, mapped to spots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spatialdata import SpatialData

import hist_sd as hs

GENES = ["ERBB2", "GRB7", "COL1A1", "KRT19", "MGP"]


def rgb_encoder() -> torch.nn.Module:
    """A cheap real-image encoder: mean colour of a 4 x 4 grid of each spot's patch (48 features)."""
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())


@pytest.fixture(scope="module")
def b4_model(b4):
    """A copy of B4 (image shared) with patch features, and a tiny HiST trained on it (a few epochs)."""
    sd = SpatialData(images=dict(b4.images), shapes=dict(b4.shapes), tables={"table": b4.tables["table"].copy()})
    hs.pp.features(sd, encoder=rgb_encoder(), encoder_kwargs={"input_size": 32, "name": "rgb4x4"}, progress=False)
    model = hs.tl.train(sd, genes=GENES, epochs=4, preset="tiny", progress=False, seed=0)
    return sd, model


def test_gradcam_maps_per_layer(b4_model):
    sd, model = b4_model
    table = sd.tables["table"].copy()
    hs.tl.explain(model, table, gene="ERBB2")
    cols = ["hist_gradcam_encoder", "hist_gradcam_attention", "hist_gradcam_decoder"]
    entry = table.uns["hist_gradcam"]
    assert list(entry["columns"]) == cols and list(entry["modules"]) == ["encoder.2", "gates.0", "decoder.0"]
    assert entry["params"]["gene"] == "ERBB2" and entry["params"]["method"] == "hist"
    for col in cols:
        values = table.obs[col].to_numpy()
        assert values.shape == (table.n_obs,) and np.isfinite(values).all()
        assert values.min() >= 0 and values.max() <= 1 + 1e-9
    decoder = table.obs["hist_gradcam_decoder"].to_numpy()
    assert decoder.max() == pytest.approx(1.0) and decoder.std() > 0.01  # a map, not a constant
    # a dotted module name, another gene, same model: deterministic and different
    hs.tl.explain(model, table, gene="COL1A1", layer="decoder.0", key_added="col1a1")
    again = table.copy()
    hs.tl.explain(model, again, gene="COL1A1", layer="decoder.0", key_added="col1a1", overwrite=True)
    np.testing.assert_allclose(table.obs["col1a1_decoder_0"], again.obs["col1a1_decoder_0"])
    assert not np.allclose(table.obs["col1a1_decoder_0"], decoder)


def test_refusals(b4_model):
    sd, model = b4_model
    table = sd.tables["table"].copy()
    with pytest.raises(KeyError, match="not predicted by the model"):
        hs.tl.explain(model, table, gene="MKI67")
    with pytest.raises(ValueError, match="is not a layer"):
        hs.tl.explain(model, table, gene="ERBB2", layer="head.conv")
    noattn = hs.tl.train(sd, genes=GENES[:2], method="hist_noattn", epochs=1, preset="tiny", progress=False)
    with pytest.raises(ValueError, match="'attention' is not a layer of this 'hist_noattn' network"):
        hs.tl.explain(noattn, table, gene="ERBB2", layer="attention")
    ridge = hs.tl.train(sd, genes=GENES[:2], method="ridge", progress=False)
    with pytest.raises(ValueError, match="need a HiST model"):
        hs.tl.explain(ridge, table, gene="ERBB2")
    hs.tl.explain(model, table, gene="ERBB2", layer="decoder")
    with pytest.raises(KeyError, match="exists already"):
        hs.tl.explain(model, table, gene="ERBB2", layer="decoder")
    bare = table.copy()
    del bare.obsm["X_hist"]
    with pytest.raises(KeyError, match="hs.pp.features"):
        hs.tl.explain(model, bare, gene="ERBB2", key_added="other")
