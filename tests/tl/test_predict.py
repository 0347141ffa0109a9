"""Prediction on real data: features of her2st B4 spots, a model, and a tiled bare H&E image."""

from __future__ import annotations

import numpy as np
import pytest
from anndata import AnnData

import hist_sd as hs

GENES = ["ERBB2", "KRT19", "IGKC", "COL1A1", "MGP", "SCGB2A2"]


@pytest.fixture(scope="module")
def b4_features(b4) -> AnnData:
    """B4's table (a copy) with efficientnet-lite0 features of its spots."""
    table = b4.tables["table"].copy()
    from spatialdata import SpatialData

    sd = SpatialData(images=dict(b4.images), tables={"table": table})
    hs.pp.features(sd, progress=False)
    return table


def test_predict_writes_table_and_bare_image_table(b4_features, data_dir, tmp_path):
    model = hs.tl.train(b4_features, genes=GENES, method="ridge", progress=False)
    assert model.encoder == "efficientnet-lite0" and model.feature_dim == 1280

    table = b4_features.copy()
    hs.tl.predict(table, model, key_added="pred")
    assert table.obsm["pred"].shape == (table.n_obs, len(GENES))
    assert list(table.uns["pred"]["genes"]) == GENES
    scores = hs.tl.evaluate(table, pred_key="pred")
    assert scores["pearson"].mean() > 0.3  # in-sample ridge on real features

    # a bare image: no spots, no expression
    jpg = data_dir / "her2st" / "data" / "ST-imgs" / "B" / "B4" / "BT10737_D2_HE.jpg"
    bare = hs.io.read_image(jpg, mpp=0.6876, scale_factors=(4, 4))
    hs.pp.tile(bare, tile_um=400)
    hs.pp.features(bare, table_key="tiles", patch_um=100, progress=False)  # the model's 100 µm patches
    with pytest.warns(hs.TooFewGenesWarning, match="6 genes"):  # far too few for CNV inference downstream
        hs.tl.predict(bare, model)
    pred = bare.tables["hist_pred"]
    tiles = bare.tables["tiles"]
    assert pred.shape == (tiles.n_obs, len(GENES)) and list(pred.var_names) == GENES
    np.testing.assert_array_equal(pred.X, tiles.obsm["hist_pred"])
    np.testing.assert_array_equal(pred.obsm["spatial"], tiles.obsm["spatial"])
    assert pred.uns["spatialdata_attrs"]["region"] == tiles.uns["spatialdata_attrs"]["region"]
    import squidpy as sq

    sq.gr.spatial_neighbors_grid(pred, n_neighs=4)
    sq.gr.spatial_autocorr(pred, mode="moran", n_perms=None)
    assert set(pred.uns["moranI"].index) == set(GENES)
    # two tables now; the only one that is not a prediction ("tiles") is the obvious one
    with pytest.raises(KeyError, match=r"obsm\['hist_pred'\]` exists already"):
        hs.tl.predict(bare, model)
    with pytest.raises(KeyError, match="exists already"):
        hs.tl.predict(bare, model, table_key="tiles")
    hs.io.write_zarr(bare, tmp_path / "bare.zarr")
    back = hs.io.read_zarr(tmp_path / "bare.zarr")
    np.testing.assert_array_equal(np.asarray(back.tables["hist_pred"].X), pred.X)


def test_predict_refuses_features_from_another_encoder(b4_features):
    model = hs.tl.train(b4_features, genes=GENES[:2], method="ridge", progress=False)
    other = b4_features.copy()
    other.uns["X_hist"] = {"params": {**dict(other.uns["X_hist"]["params"]), "encoder": "ctranspath"}}
    with pytest.raises(ValueError, match="ctranspath"):
        hs.tl.predict(other, model)
    missing = b4_features.copy()
    del missing.obsm["X_hist"]
    with pytest.raises(KeyError, match="hs.pp.features"):
        hs.tl.predict(missing, model)


def test_predicted_table_works_with_squidpy_on_the_legacy_st_grid(b4, b4_features):
    """The documented squidpy call for legacy ST (square grid) finds the same 4 neighbours as hist_sd's rule."""
    import squidpy as sq
    from spatialdata import SpatialData

    from hist_sd._core._grid import assign_grid, neighbours

    sd = SpatialData(images=dict(b4.images), shapes=dict(b4.shapes), tables={"table": b4_features.copy()})
    model = hs.tl.train(b4_features, genes=GENES, method="ridge", progress=False)
    with pytest.warns(hs.TooFewGenesWarning):
        hs.tl.predict(sd, model, table_added="hist_pred")
    pred = sd.tables["hist_pred"]
    assert pred.uns["log1p"] == {"base": None} and "spatial" in pred.uns
    sq.gr.spatial_neighbors_grid(pred, n_neighs=4)
    got = pred.obsp["spatial_connectivities"].tocoo()
    grid = assign_grid(pred, layout="st", pad_multiple=1)
    want = {tuple(p) for p in neighbours(grid.rows, grid.cols, "st", n_neighs=4).tolist()}
    edges = {(int(i), int(j)) for i, j in zip(got.row, got.col, strict=True)}
    assert len(edges & want) / len(want) > 0.97  # the spots' pixel positions wobble around the array grid
    assert np.median(np.bincount(got.row, minlength=pred.n_obs)) == 4


def test_spatialdata_plot_draws_predictions_over_the_image(b4, b4_features):
    """render_images().render_shapes(color=gene, table_name=<predicted table>) draws the predicted values on the
    spots over the H&E, like the measured gene drawn from the measured table (compared by array statistics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import spatialdata_plot  # noqa: F401
    from spatialdata import SpatialData

    sd = SpatialData(images=dict(b4.images), shapes=dict(b4.shapes), tables={"table": b4_features.copy()})
    model = hs.tl.train(b4_features, genes=GENES, method="ridge", progress=False)
    with pytest.warns(hs.TooFewGenesWarning):
        hs.tl.predict(sd, model, table_added="hist_pred")

    def render(table: str) -> tuple[np.ndarray, np.ndarray]:
        fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
        try:
            sd.pl.render_images().pl.render_shapes(color="ERBB2", table_name=table).pl.show(ax=ax, colorbar=False)
            fig.canvas.draw()
            (spots,) = ax.collections
            assert len(ax.images) == 1 and len(spots.get_paths()) == sd.tables[table].n_obs
            return np.asarray(fig.canvas.buffer_rgba()).astype(float), np.asarray(spots.get_facecolors())
        finally:
            plt.close(fig)

    (pred, colours), (ref, _) = render("hist_pred"), render("table")
    assert len(np.unique(colours.round(3), axis=0)) > 50  # real values, not the grey of missing ones
    assert abs(pred.mean() - ref.mean()) < 3 and abs(pred.std() - ref.std()) < 3  # same H&E, same spots
    nonwhite, ref_nonwhite = ((b[..., :3].min(axis=-1) < 240).mean() for b in (pred, ref))
    assert abs(nonwhite - ref_nonwhite) < 0.01
    # and the colours follow the values: the brightest spot is the one with the highest prediction
    values = sd.tables["hist_pred"][:, "ERBB2"].X.ravel()
    assert int(np.argmax(colours[:, :3].sum(axis=1))) == int(np.argmax(values))
