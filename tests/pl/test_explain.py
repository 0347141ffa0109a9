"""hs.pl.explain: one Grad-CAM panel per layer (after the predicted gene) over the real B4 image."""

from __future__ import annotations

import warnings

import pytest
import torch
from spatialdata import SpatialData

import hist_sd as hs
from hist_sd._core._warnings import TooFewGenesWarning


def test_explain_panels(b4, tmp_path):
    sd = SpatialData(images=dict(b4.images), shapes=dict(b4.shapes), tables={"table": b4.tables["table"].copy()})
    enc = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
    hs.pp.features(sd, encoder=enc, encoder_kwargs={"input_size": 32, "name": "rgb4x4"}, progress=False)
    model = hs.tl.train(sd, genes=["ERBB2", "COL1A1"], epochs=2, preset="tiny", progress=False)
    with pytest.raises(KeyError, match="hs.tl.explain"):
        hs.pl.explain(sd)
    hs.tl.explain(model, sd, gene="ERBB2")
    fig = hs.pl.explain(sd, pred_key=None)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"Grad-CAM ERBB2: {layer}" for layer in ("encoder", "attention", "decoder")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TooFewGenesWarning)
        hs.tl.predict(sd, model)
    out = tmp_path / "gradcam.png"
    fig = hs.pl.explain(sd, save=out, ncols=2)
    assert out.stat().st_size > 10_000
    assert [ax.get_title() for ax in fig.axes if ax.get_title()][0] == "ERBB2 (predicted)"
