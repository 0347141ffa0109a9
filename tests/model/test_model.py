"""The fitted model records what it was trained on (layout, patch size, mpp, encoder) and refuses other data."""

from __future__ import annotations

import numpy as np
import pytest

import hist_sd as hs

FAST = {"method": "mlp", "epochs": 3, "progress": False}


def _visium(ad):
    """The same spots and features laid out as a Visium array (columns step by 2, odd rows shifted)."""
    v = ad.copy()
    row = v.obs["array_row"].to_numpy()
    v.obs["array_col"] = 2 * v.obs["array_col"].to_numpy() + (row % 2)
    v.uns["hist_sd"] = {**v.uns["hist_sd"], "technology": "visium"}
    return v


def test_model_records_resolved_layout_patch_and_mpp(recorded, genes, tmp_path):
    model = hs.tl.train([recorded["A1"], recorded["B1"]], genes=genes, **FAST)
    assert model.layout == "st" and model.grid["layout"] == "st"  # resolved, never "auto"
    assert model.patch_um == 100.0 and model.mpp == 2.0 and model.encoder == "synthetic"
    back = hs.tl.load_model(model.save(tmp_path / "m.pt"))
    assert (back.layout, back.patch_um, back.mpp) == ("st", 100.0, 2.0)
    assert "layout='st'" in repr(back) and "patch_um=100.0" in repr(back)


def test_predict_refuses_a_visium_slide_for_an_st_model(recorded, genes):
    model = hs.tl.train([recorded["A1"], recorded["B1"]], genes=genes, **FAST)
    with pytest.raises(ValueError, match="hexagonal"):
        hs.tl.predict(_visium(recorded["C1"]), model)
    tiles = recorded["C1"].copy()  # tiles of a bare slide are a square grid like legacy ST: accepted
    tiles.uns["hist_sd"] = {**tiles.uns["hist_sd"], "technology": "tiles"}
    hs.tl.predict(tiles, model)
    assert tiles.obsm["hist_pred"].shape == (tiles.n_obs, len(genes))


def test_predict_refuses_features_of_another_patch_size(recorded, genes):
    model = hs.tl.train([recorded["A1"], recorded["B1"]], genes=genes, **FAST)
    other = recorded["C1"].copy()
    other.uns["X_hist"] = {"params": {"encoder": "synthetic", "patch_um": 200.0, "mpp": 2.0}}
    with pytest.raises(ValueError, match=r"100 µm patches.*200 µm.*patch_um=100"):
        hs.tl.predict(other, model)
    near = recorded["C1"].copy()
    near.uns["X_hist"] = {"params": {"encoder": "synthetic", "patch_um": 100.4, "mpp": 1.0}}
    hs.tl.predict(near, model)  # within 1 %: the same patch size


def test_training_refuses_mixed_geometry_or_patch_sizes(recorded, genes):
    with pytest.raises(ValueError, match="Visium"):
        hs.tl.train([recorded["A1"], _visium(recorded["B1"])], genes=genes, **FAST)
    b = recorded["B1"].copy()
    b.uns["X_hist"] = {"params": {"encoder": "synthetic", "patch_um": 55.0}}
    with pytest.raises(ValueError, match="patches of different sizes"):
        hs.tl.train([recorded["A1"], b], genes=genes, **FAST)


def test_a_visium_model_predicts_visium(recorded, genes):
    train = [_visium(recorded["A1"]), _visium(recorded["B1"])]
    model = hs.tl.train(train, genes=genes, method="gnn", epochs=3, progress=False)
    assert model.layout == "visium"
    test = _visium(recorded["C1"])
    hs.tl.predict(test, model)
    assert np.isfinite(test.obsm["hist_pred"]).all()
    with pytest.raises(ValueError, match="hexagonal"):
        hs.tl.predict(recorded["C1"].copy(), model)


def _multiscale(ad, sizes):
    """The slide with features recorded as the concatenation of one block per patch size (``pp.features``)."""
    m = ad.copy()
    m.uns["X_hist"] = {"params": {"encoder": "synthetic", "patch_um": np.asarray(sizes, float), "mpp": 2.0}}
    return m


def test_multiscale_features_are_recorded_saved_and_checked(recorded, genes, tmp_path):
    sizes = (100.0, 200.0, 400.0)
    model = hs.tl.train([_multiscale(recorded["A1"], sizes), _multiscale(recorded["B1"], sizes)], genes=genes, **FAST)
    assert model.patch_um == [100.0, 200.0, 400.0]
    back = hs.tl.load_model(model.save(tmp_path / "m.pt"))
    assert back.patch_um == [100.0, 200.0, 400.0]
    same = _multiscale(recorded["C1"], (100.2, 200.0, 400.0))  # within 1 %
    hs.tl.predict(same, back)
    assert same.obsm["hist_pred"].shape == (same.n_obs, len(genes))
    for other in ((100.0, 200.0), (100.0, 400.0, 200.0), (100.0,)):
        with pytest.raises(ValueError, match=r"\(100, 200, 400\) µm patches.*patch_um=\(100, 200, 400\)"):
            hs.tl.predict(_multiscale(recorded["C1"], other), back)
    with pytest.raises(ValueError, match="patches of different sizes"):
        hs.tl.train([_multiscale(recorded["A1"], sizes), _multiscale(recorded["B1"], (100.0, 200.0))],
                    genes=genes, **FAST)
