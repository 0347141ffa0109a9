"""Predictions are safe to write: inputs are never replaced, overwrite replaces all it wrote, clear refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from spatialdata import SpatialData

import hist_sd as hs

FAST = {"method": "mlp", "epochs": 3, "progress": False}


@pytest.fixture
def model(sections, genes):
    return hs.tl.train([sections["A1"], sections["B1"]], genes=genes, **FAST)


def _sdata(table):
    from spatialdata.models import TableModel

    t = table.copy()
    t.obs["region"] = pd.Categorical(["spots"] * t.n_obs)
    t.obs["spot_id"] = np.arange(t.n_obs)
    t = TableModel.parse(t, region="spots", region_key="region", instance_key="spot_id")
    return SpatialData(tables={"table": t})


def test_a_result_never_replaces_an_input(sections, model):
    ad = sections["C1"]
    for key in ("spatial", "X_hist"):
        with pytest.raises(KeyError, match="holds an input"):
            hs.tl.predict(ad, model, key_added=key, overwrite=True)
    sd = _sdata(ad)
    with pytest.raises(KeyError, match="holds measured data"):
        hs.tl.predict(sd, model, table_added="table", overwrite=True)
    for ad_ in sections.values():
        ad_.obs["tumor"] = ad_.obsm["X_hist"][:, 0] > 0
    tumour = hs.tl.train([sections["A1"], sections["B1"]], task="tumor", **FAST)
    with pytest.raises(KeyError, match="holds an input"):
        hs.tl.predict(ad, tumour, key_added="in_tissue", overwrite=True)
    assert "X_hist" in ad.obsm and ad.obsm["spatial"].shape == (ad.n_obs, 2)


def test_overwrite_replaces_every_element_together(sections, genes, model):
    sd = _sdata(sections["C1"])
    with pytest.warns(hs.TooFewGenesWarning):
        hs.tl.predict(sd, model, table_added="pred_table")
    other = hs.tl.train([sections["A1"], sections["B1"]], genes=genes[:3], **FAST)
    with pytest.warns(hs.TooFewGenesWarning):
        hs.tl.predict(sd, other, overwrite=True)  # no table_added: the table written before is replaced too
    table = sd.tables["table"]
    assert table.obsm["hist_pred"].shape[1] == 3 and list(table.uns["hist_pred"]["genes"]) == genes[:3]
    assert list(sd.tables["pred_table"].var_names) == genes[:3]
    np.testing.assert_array_equal(sd.tables["pred_table"].X, table.obsm["hist_pred"])
    assert sd.tables["pred_table"].uns["log1p"] == {"base": None}  # scanpy's marker of log data


def test_a_slide_without_tissue_is_refused(sections, model):
    ad = sections["C1"]
    ad.obs["in_tissue"] = 0
    with pytest.raises(ValueError, match="No spot of this slide is in tissue"):
        hs.tl.predict(ad, model)
    assert "hist_pred" not in ad.obsm


def test_unrecorded_features_warn(sections, genes):
    bare = {k: v.copy() for k, v in sections.items()}
    for ad in bare.values():
        del ad.uns["X_hist"]
    with pytest.warns(hs.UnrecordedFeaturesWarning, match="no record of its encoder"):
        model = hs.tl.train([bare["A1"], bare["B1"]], genes=genes, **FAST)
    recorded = hs.tl.train([sections["A1"], sections["B1"]], genes=genes, **FAST)
    with pytest.warns(hs.UnrecordedFeaturesWarning, match="cannot be checked"):
        hs.tl.predict(bare["C1"], recorded)
    assert model.encoder == "unknown"


def test_spatial_models_warn_on_other_spot_spacing(sections, genes):
    grid_model = hs.tl.train([sections["A1"], sections["B1"]], genes=genes, method="gnn", epochs=2, progress=False)
    assert grid_model.spacing_um == 200.0
    tiles = sections["C1"].copy()
    tiles.uns["hist_sd"] = {**tiles.uns["hist_sd"], "technology": "tiles", "spot_spacing_um": 100.0}
    with pytest.warns(hs.GridSpacingWarning, match="tile_um=200"):
        hs.tl.predict(tiles, grid_model)
    spot_model = hs.tl.train([sections["A1"], sections["B1"]], genes=genes, **FAST)
    hs.tl.predict(tiles, spot_model, key_added="per_spot")  # a per-spot model has no spatial context: no warning


def test_cross_validate_takes_epochs_and_skips_unmeasured_genes(sections, genes, caplog):
    res = hs.tl.cross_validate(sections, method="mlp", genes=genes, epochs=2, progress=False)
    assert res.models == {} and set(res.scores["gene"]) == set(genes)
    with pytest.raises(ValueError, match="disagree"):
        hs.tl.cross_validate(sections, method="mlp", genes=genes, epochs=2, train_kwargs={"epochs": 3})
    partial = dict(sections)
    partial["C1"] = sections["C1"][:, [g for g in sections["C1"].var_names if g != "G2"]].copy()
    others = [g for g in genes if g != "G2"]  # the folds that train on C1 do not ask for G2 ...
    per_fold = {"A": others, "B": others, "C": genes}  # ... the fold that holds C1 out was given it
    res = hs.tl.cross_validate(partial, method="ridge", genes=per_fold, progress=False)
    held = res.scores[res.scores["section"] == "C1"]
    assert "G2" not in set(held["gene"]) and len(held) == len(genes) - 1
    assert "not measured in the held-out section 'C1'" in caplog.text
