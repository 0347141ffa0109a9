from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from matplotlib import colormaps
from matplotlib.collections import EllipseCollection, PolyCollection
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

import hist_sd as hs
from hist_sd._core._expr import measured_matrix
from hist_sd._core._image import stored_source
from hist_sd.pl._utils import pick_level, read_crop

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PRED_GENES = ["ERBB2", "GRB7", "COL1A1"]  # as in conftest.b4_pred


SPOTS = (EllipseCollection, PolyCollection)  # circles for spots, squares for tiles


def _panels(fig: Figure) -> list:
    """The spot panels of a figure (not its colour bars), in drawing order."""
    return [a for a in fig.axes if any(isinstance(c, SPOTS) for c in a.collections)]


def _spots(ax) -> EllipseCollection | PolyCollection:
    colls = [c for c in ax.collections if isinstance(c, SPOTS)]
    assert len(colls) == 1
    return colls[0]


def _scalebar_text(ax) -> str | None:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    bars = [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]
    return bars[0].txt_label.get_text() if bars else None


def test_anndata_only_draws_true_size_spots_without_image(b4):
    t = b4.tables["table"]
    fig = hs.pl.spatial(t, "ERBB2")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert not ax.images  # no SpatialData, no image
    coll = _spots(ax)
    assert len(coll.get_offsets()) == t.n_obs == 283
    np.testing.assert_allclose(coll.get_offsets(), t.obsm["spatial"])
    mpp = t.uns["hist_sd"]["mpp"]
    np.testing.assert_allclose(coll.get_widths(), 100.0 / mpp)  # 100 µm legacy ST spots, in pixels
    expected, label = measured_matrix(t, ["ERBB2"])
    np.testing.assert_allclose(coll.get_array(), expected[:, 0])
    assert label == "log1p(CP10k)"
    assert ax.get_title() == "ERBB2"
    assert fig.axes[1].get_ylabel() == "log1p(CP10k)"  # colour bar
    ylo, yhi = ax.get_ylim()
    assert ylo > yhi  # image coordinates: y axis points down


def test_image_under_spots_from_a_coarse_level(b4):
    fig = hs.pl.spatial(b4, "ERBB2", vmax="p99")
    ax = fig.axes[0]
    images = [im for im in ax.get_children() if isinstance(im, AxesImage)]
    assert len(images) == 1
    crop = np.asarray(images[0].get_array())
    assert crop.dtype == np.uint8 and crop.shape[-1] == 3
    assert max(crop.shape[:2]) < 1500  # not the 9k x 9k full-resolution image
    left, right, bottom, top = images[0].get_extent()
    xy = b4.tables["table"].obsm["spatial"]
    assert left <= xy[:, 0].min() and right >= xy[:, 0].max()
    assert top <= xy[:, 1].min() and bottom >= xy[:, 1].max()
    # the image is aligned: tissue under the spots is darker than the crop overall
    col = ((xy[:, 0] - left) / (right - left) * crop.shape[1]).astype(int)
    row = ((xy[:, 1] - top) / (bottom - top) * crop.shape[0]).astype(int)
    assert crop[row, col].mean() < np.median(crop) - 10
    coll = _spots(ax)
    vals = np.asarray(coll.get_array())
    assert coll.norm.vmax == pytest.approx(np.percentile(vals, 99))


def test_prediction_colours_match_values(b4_pred):
    fig = hs.pl.spatial(
        b4_pred, ["GRB7", "ERBB2"], key="hist_pred", image=False, cmap="viridis", vmin=0, vmax=3
    )
    t = b4_pred.tables["table"]
    fig.canvas.draw()
    for ax, g in zip(_panels(fig), ["GRB7", "ERBB2"], strict=True):
        coll = _spots(ax)
        values = t.obsm["hist_pred"][:, PRED_GENES.index(g)]
        np.testing.assert_allclose(coll.get_array(), values)
        expected = colormaps["viridis"](Normalize(0, 3)(values), alpha=1.0)  # opaque: the H&E does not tint them
        np.testing.assert_allclose(coll.get_facecolors(), expected, atol=1e-6)
        assert ax.get_title() == f"{g} (predicted)"
    assert fig.axes[-1].get_ylabel() == "predicted expression"  # a real label, not the obsm key


def test_categorical_obs_gets_palette_and_legend(b4_pred):
    t = b4_pred.tables["table"]
    fig = hs.pl.spatial(b4_pred, obs="region_label", image=False, palette={"high": "red", "low": "blue"})
    ax = fig.axes[0]
    fig.canvas.draw()
    colors = _spots(ax).get_facecolors()
    high = (t.obs["region_label"] == "high").to_numpy()
    assert high.any() and (~high).any()
    np.testing.assert_allclose(colors[high][:, :3], np.tile(to_rgba("red")[:3], (high.sum(), 1)))
    np.testing.assert_allclose(colors[~high][:, :3], np.tile(to_rgba("blue")[:3], ((~high).sum(), 1)))
    assert [tx.get_text() for tx in ax.get_legend().get_texts()] == ["high", "low"]
    assert len(fig.axes) == 1  # no colour bar for categories


def test_genes_and_obs_panels_and_ax(b4_pred):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2)
    out = hs.pl.spatial(b4_pred, "COL1A1", obs="in_tissue", ax=list(axes), image=False, title=["a", "b"])
    assert out == list(axes)
    assert [a.get_title() for a in axes] == ["a", "b"]
    with pytest.raises(ValueError, match="ax"):
        hs.pl.spatial(b4_pred, ["COL1A1", "ERBB2"], ax=axes[0], image=False)


def test_errors(b4_pred):
    with pytest.raises(KeyError, match="NOTAGENE"):
        hs.pl.spatial(b4_pred, "NOTAGENE", image=False)
    with pytest.raises(KeyError, match="SCD"):  # measured, but not predicted
        hs.pl.spatial(b4_pred, "SCD", key="hist_pred", image=False)
    with pytest.raises(KeyError, match="nokey"):
        hs.pl.spatial(b4_pred, "ERBB2", key="nokey", image=False)
    with pytest.raises(KeyError, match="nocol"):
        hs.pl.spatial(b4_pred, obs="nocol", image=False)
    with pytest.raises(ValueError, match="Nothing to draw"):
        hs.pl.spatial(b4_pred)
    with pytest.raises(ValueError, match="vmax"):
        hs.pl.spatial(b4_pred, "ERBB2", vmax="top", image=False)
    with pytest.raises(KeyError, match="image_key"):
        hs.pl.spatial(b4_pred, "ERBB2", image_key="nope")


def test_save_png_atomic_and_no_overwrite(b4, tmp_path):
    t = b4.tables["table"]
    path = tmp_path / "out" / "erbb2.png"
    hs.pl.spatial(t, "ERBB2", save=path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    with pytest.raises(FileExistsError, match="overwrite"):
        hs.pl.spatial(t, "GRB7", save=path)
    assert path.read_bytes() == data  # untouched
    hs.pl.spatial(t, "GRB7", save=path, overwrite=True)
    assert path.read_bytes() != data
    assert sorted(p.name for p in path.parent.iterdir()) == ["erbb2.png"]  # no temporary files left


def test_predicted_vs_measured(b4_pred, tmp_path):
    genes = ["ERBB2", "COL1A1"]
    fig = hs.pl.predicted_vs_measured(b4_pred, genes, image=False, save=tmp_path / "pvm.png")
    assert (tmp_path / "pvm.png").read_bytes().startswith(PNG_MAGIC)
    scores = hs.tl.evaluate(b4_pred, genes=genes).set_index("gene")
    panels = _panels(fig)
    assert len(panels) == 4
    titles = [a.get_title() for a in panels]
    assert titles[:2] == ["ERBB2 measured", "COL1A1 measured"]  # top row measured, bottom row predicted
    for g, title in zip(genes, titles[2:], strict=True):
        assert title == f"{g} predicted (r = {scores.loc[g, 'pearson']:.2f})"
    t = b4_pred.tables["table"]
    np.testing.assert_allclose(
        _spots(panels[3]).get_array(), t.obsm["hist_pred"][:, PRED_GENES.index("COL1A1")]
    )
    with pytest.raises(KeyError, match="pred_key"):
        hs.pl.predicted_vs_measured(b4_pred, genes, pred_key="missing")


def test_predicted_vs_measured_shares_one_scale_per_gene(b4_pred):
    genes = ["ERBB2", "COL1A1"]
    t = b4_pred.tables["table"]
    fig = hs.pl.predicted_vs_measured(b4_pred, genes, image=False)
    panels = _panels(fig)
    in_tissue = t.obs["in_tissue"].astype(bool).to_numpy()
    meas, _ = measured_matrix(t, genes)
    for j, g in enumerate(genes):
        top, bottom = _spots(panels[j]).norm, _spots(panels[2 + j]).norm
        assert (top.vmin, top.vmax) == (bottom.vmin, bottom.vmax)
        pooled = np.r_[meas[in_tissue, j], t.obsm["hist_pred"][in_tissue, PRED_GENES.index(g)]]
        assert top.vmax == pytest.approx(np.percentile(pooled, 99))
        assert top.vmin == pytest.approx(pooled.min())
    labels = {a.get_ylabel() for a in fig.axes if a not in panels}
    assert labels == {"log1p(CP10k)"}  # both rows on the measured scale, no internal key
    assert "one colour scale per gene" in fig._suptitle.get_text()
    assert f"r over {int(in_tissue.sum())} spots" in fig._suptitle.get_text()
    assert _scalebar_text(panels[0]).endswith(("µm", "mm")) and _scalebar_text(panels[1]) is None
    assert _spots(panels[0]).cmap.name.startswith("YlGnBu")  # reads on H&E; magma's dark end does not


def test_predicted_vs_measured_zscore_and_separate(b4_pred):
    t = b4_pred.tables["table"]
    in_tissue = t.obs["in_tissue"].astype(bool).to_numpy()
    fig = hs.pl.predicted_vs_measured(b4_pred, "ERBB2", image=False, color_scale="zscore", title="B4: ERBB2")
    panels = _panels(fig)
    for ax in panels:
        z = np.asarray(_spots(ax).get_array())[in_tissue]
        assert z.mean() == pytest.approx(0, abs=1e-9) and z.std() == pytest.approx(1)
        assert (_spots(ax).norm.vmin, _spots(ax).norm.vmax) == (-3, 3)
        assert _spots(ax).cmap.name.startswith("RdBu_r")
    assert fig._suptitle.get_text() == "B4: ERBB2"
    assert {a.get_ylabel() for a in fig.axes if a not in panels} == {"z-score (SD from the mean)"}
    fig = hs.pl.predicted_vs_measured(b4_pred, "ERBB2", image=False, color_scale="separate", vmax=None)
    top, bottom = (_spots(a).norm for a in _panels(fig))
    assert top.vmax != bottom.vmax  # each map spans its own values
    with pytest.raises(ValueError, match="color_scale"):
        hs.pl.predicted_vs_measured(b4_pred, "ERBB2", image=False, color_scale="own")


def test_fractions_get_a_0_to_1_scale(b4_pred):
    t = b4_pred.tables["table"]
    t.obs["p_tumour"] = np.linspace(0.2, 0.7, t.n_obs)
    try:
        norm = _spots(hs.pl.spatial(b4_pred, obs="p_tumour", image=False).axes[0]).norm
        assert (norm.vmin, norm.vmax) == (0.0, 1.0)
        norm = _spots(hs.pl.spatial(b4_pred, obs="p_tumour", image=False, vmax=0.5).axes[0]).norm
        assert (norm.vmin, norm.vmax) == (0.0, 0.5)
    finally:
        del t.obs["p_tumour"]


def test_colour_bars_carry_real_labels(b4):
    t = b4.tables["table"].copy()
    t.X = t.X.astype(np.float32)  # not counts: drawn as stored
    assert hs.pl.spatial(t, "ERBB2", normalize=False).axes[1].get_ylabel() == "expression"  # not "X"
    t.uns["hist_sd"] = {**t.uns["hist_sd"], "prediction": "hist_pred"}  # a predicted table of hs.tl.predict
    assert hs.pl.spatial(t, "ERBB2", normalize=False).axes[1].get_ylabel() == "predicted expression"


def test_tiles_are_drawn_as_squares_with_a_scale_bar(b4):
    key = next(iter(b4.images))
    crop = b4.images[key]["scale0"]["image"].isel(y=slice(3000, 5000), x=slice(3000, 5000)).values
    sdata = hs.io.read_image(np.moveaxis(crop, 0, -1), mpp=0.6875, name="crop")
    hs.pp.tile(sdata, tile_um=200, min_tissue=0.0)
    tiles = sdata.tables["tiles"]
    fig = hs.pl.spatial(sdata, obs="tissue_fraction", table_key="tiles")
    ax = _panels(fig)[0]
    squares = _spots(ax)
    assert isinstance(squares, PolyCollection) and len(squares.get_paths()) == tiles.n_obs
    verts = squares.get_paths()[0].vertices[:4]
    side = 200 / 0.6875
    np.testing.assert_allclose(np.ptp(verts, axis=0), [side, side])
    np.testing.assert_allclose(verts.mean(axis=0), tiles.obsm["spatial"][0])
    assert (squares.norm.vmin, squares.norm.vmax) == (0.0, 1.0)
    assert _scalebar_text(ax) in {"200 µm", "500 µm", "100 µm"}  # a round length, about a fifth of 1.4 mm
    assert _scalebar_text(_panels(hs.pl.spatial(sdata, obs="tissue_fraction", table_key="tiles",
                                                 scalebar=False))[0]) is None


def _pyramid(base: np.ndarray) -> list[tuple[str, xr.DataArray]]:
    """Two levels; level 1 is derived lazily from level 0 (as in an in-memory SpatialData)."""
    a0 = xr.DataArray(da.from_array(base, chunks=(3, 16, 16)), dims=("c", "y", "x"))
    a1 = a0.coarsen(y=2, x=2).mean().astype(np.uint8)
    return [("scale0", a0), ("scale1", a1)]


def test_level_choice_and_block_average():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(3, 64, 48), dtype=np.uint8)
    levels = _pyramid(base)
    assert stored_source(levels, 1) == 0  # derived: read from level 0
    stored = [
        ("scale0", levels[0][1]),
        ("scale1", xr.DataArray(da.from_array(base[:, ::2, ::2]), dims=("c", "y", "x"))),
    ]
    assert stored_source(stored, 1) == 1
    assert pick_level(levels, crop_px=48, target_px=20) == 1
    assert pick_level(levels, crop_px=48, target_px=30) == 0
    assert pick_level(levels, crop_px=48, target_px=30, scale="scale1") == 1
    with pytest.raises(KeyError, match="scale9"):
        pick_level(levels, crop_px=48, target_px=30, scale="scale9")
    crop, extent = read_crop(levels, 1, (8.0, 31.0, 4.0, 39.0))
    expected = base[:, 4:40, 8:32].reshape(3, 18, 2, 12, 2).mean(axis=(2, 4))
    np.testing.assert_array_equal(np.moveaxis(crop, -1, 0), np.rint(expected).astype(np.uint8))
    assert extent == (7.5, 31.5, 39.5, 3.5)
