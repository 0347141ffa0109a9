from __future__ import annotations

import numpy as np
import pytest
import spatialdata as sd

import hist_sd as hs
from hist_sd._core._image import get_image


def _disc_image(size: int = 2000, radius: int = 600, seed: int = 0) -> np.ndarray:
    """A dark, unsaturated disc on slightly noisy white glass."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(245, 3, size=(size, size, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2 - 100) ** 2 <= radius**2
    img[disc] = 70
    return img


@pytest.fixture(scope="module")
def b4_image(b4) -> tuple[sd.SpatialData, float]:
    """A new SpatialData holding only B4's image (the shared fixture itself is never modified)."""
    t = b4.tables["table"]
    key = t.uns["hist_sd"]["image_key"]
    return sd.SpatialData(images={key: b4.images[key]}), float(t.uns["hist_sd"]["mpp"])


def test_disc_tile_count_and_table() -> None:
    sdata = hs.io.read_image(_disc_image(), mpp=1.0, name="disc")
    assert hs.pp.tile(sdata, tile_um=100.0) is None
    t = sdata.tables["tiles"]
    expected = np.pi * 600**2 / 100**2  # disc area / tile area
    assert abs(t.n_obs - expected) / expected < 0.05
    assert t.X.shape == (t.n_obs, 0)
    assert (t.obs["in_tissue"] == 1).all() and (t.obs["tissue_fraction"] >= 0.5).all()
    assert (t.obs["section"] == "disc").all()
    meta = t.uns["hist_sd"]
    assert meta["technology"] == "tiles" and meta["image_key"] == "disc_full_image"
    assert meta["mpp"] == 1.0 and meta["spot_diameter_um"] == pytest.approx(100.0)
    assert meta["spot_spacing_um"] == pytest.approx(100.0) and meta["shapes_key"] == "tiles_shapes"
    assert t.uns["tiles"]["params"]["min_tissue"] == 0.5
    # tile centres lie inside the disc (at most half a tile diagonal outside it)
    xy = t.obsm["spatial"]
    dist = np.hypot(xy[:, 0] - 1100, xy[:, 1] - 1000)
    assert dist.max() < 600 + 71
    # regular grid: centres are 100 px apart along rows and columns
    ix = (xy[:, 0] - xy[:, 0].min()) / 100
    np.testing.assert_allclose(ix, t.obs["array_col"] - t.obs["array_col"].min(), atol=1e-6)
    iy = (xy[:, 1] - xy[:, 1].min()) / 100
    np.testing.assert_allclose(iy, t.obs["array_row"] - t.obs["array_row"].min(), atol=1e-6)
    # squares of the tile size, region/instance keys as in the readers
    shapes = sdata.shapes["tiles_shapes"]
    assert len(shapes) == t.n_obs
    np.testing.assert_allclose(shapes.geometry.area, 100.0**2)
    assert (t.obs["region"] == "tiles_shapes").all()
    np.testing.assert_array_equal(t.obs["spot_id"], np.arange(t.n_obs))
    # ready for the grid
    hs.pp.grid(sdata, table_key="tiles", layout="auto")
    assert t.uns["grid"]["layout"] == "tiles"
    _, mask = hs.pp.to_grid(sdata, np.ones(t.n_obs), table_key="tiles")
    assert int(mask.sum()) == t.n_obs


def test_disc_min_tissue_and_shape() -> None:
    sdata = hs.io.read_image(_disc_image(), mpp=1.0, name="disc")
    hs.pp.tile(sdata, tile_um=100.0, min_tissue=0.0, key_added="all")
    hs.pp.tile(sdata, tile_um=100.0, min_tissue=1.0, key_added="full")
    n_all, n_full = sdata.tables["all"].n_obs, sdata.tables["full"].n_obs
    # min_tissue=0 keeps the whole bounding box of the disc (~1200 px) in 100 µm tiles: a full rectangle
    t_all = sdata.tables["all"]
    assert n_all == (t_all.obs["array_row"].max() + 1) * (t_all.obs["array_col"].max() + 1)
    assert 12 * 12 <= n_all <= 13 * 13
    assert n_full < np.pi * 600**2 / 100**2 < n_all
    hs.pp.tile(sdata, shape=(8, 6), min_tissue=0.0, key_added="fixed")
    t = sdata.tables["fixed"]
    assert t.n_obs == 48 and t.obs["array_row"].max() == 7 and t.obs["array_col"].max() == 5
    # square tiles: side = max(1200 / 8, 1200 / 6) px
    assert t.uns["hist_sd"]["spot_diameter_um"] == pytest.approx(200.0, rel=0.02)


def test_tiles_cover_b4_spots(b4, b4_image: tuple[sd.SpatialData, float]) -> None:
    base, mpp = b4_image
    sdata = sd.SpatialData(images=dict(base.images))
    hs.pp.tile(sdata, tile_um=200.0, mpp=mpp)
    t = sdata.tables["tiles"]
    side = t.uns["hist_sd"]["tile_px"]
    assert side == pytest.approx(200.0 / mpp)
    spots = b4.tables["table"].obsm["spatial"]
    centres = t.obsm["spatial"]
    covered = np.array([(np.abs(centres - p).max(axis=1) <= side / 2).any() for p in spots])
    assert covered.mean() > 0.85
    # tiles are on tissue: darker than the glass on average
    img = get_image(sdata, t.uns["hist_sd"]["image_key"])
    gray = np.asarray(img.data[:, ::8, ::8]).mean(axis=0)
    c = (centres / 8).astype(int)
    assert gray[c[:, 1], c[:, 0]].mean() < np.median(gray) - 15
    # about as many 200 µm tiles as ST spots (one spot per 200 µm x 200 µm cell)
    assert 0.7 < t.n_obs / len(spots) < 1.5


def test_tile_errors() -> None:
    sdata = hs.io.read_image(_disc_image(size=400, radius=120), mpp=1.0, name="disc")
    hs.pp.tile(sdata, tile_um=50.0)
    with pytest.raises(KeyError, match="exists already"):
        hs.pp.tile(sdata, tile_um=50.0)
    hs.pp.tile(sdata, tile_um=40.0, overwrite=True)
    assert sdata.tables["tiles"].uns["hist_sd"]["spot_diameter_um"] == pytest.approx(40.0)
    with pytest.raises(ValueError, match="min_tissue"):
        hs.pp.tile(sdata, min_tissue=1.5, key_added="x")
    with pytest.raises(ValueError, match="shape"):
        hs.pp.tile(sdata, shape=(0, 4), key_added="x")
    with pytest.raises(TypeError, match="SpatialData"):
        hs.pp.tile(sdata.tables["tiles"], key_added="x")  # type: ignore[arg-type]
    blank = hs.io.read_image(np.full((300, 300, 3), 240, np.uint8), mpp=1.0, name="blank")
    with pytest.raises(ValueError, match="No tissue"):
        hs.pp.tile(blank)
    bare = sd.SpatialData(images={"img": blank.images["blank_full_image"]})
    with pytest.raises(KeyError, match="per pixel"):
        hs.pp.tile(bare)


def test_tile_table_plots_with_scanpy_and_squidpy(b4, b4_image: tuple[sd.SpatialData, float]) -> None:
    """The tiles' table carries the slide's image in uns["spatial"], so scanpy and squidpy draw H&E + tiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc
    import squidpy as sq

    base, mpp = b4_image
    sdata = sd.SpatialData(images=dict(base.images))
    hs.pp.tile(sdata, tile_um=200.0, mpp=mpp)
    t = sdata.tables["tiles"]
    lib = t.uns["spatial"]["B4"]  # library id = the section of the image
    reader = b4.tables["table"].uns["spatial"]["B4"]
    np.testing.assert_array_equal(lib["images"]["hires"], reader["images"]["hires"])  # the slide's image
    sf = lib["scalefactors"]
    assert sf["tissue_hires_scalef"] == reader["scalefactors"]["tissue_hires_scalef"]
    assert sf["spot_diameter_fullres"] == pytest.approx(t.uns["hist_sd"]["tile_px"])
    hires = lib["images"]["hires"]
    try:
        axs = sc.pl.spatial(t, color="tissue_fraction", show=False)
        ax_sq = sq.pl.spatial_scatter(t, color="tissue_fraction", return_ax=True)
        for ax in (axs[0] if isinstance(axs, list) else axs, ax_sq):
            (im,) = ax.images
            np.testing.assert_allclose(im.get_extent(), (-0.5, hires.shape[1] - 0.5, hires.shape[0] - 0.5, -0.5))
            (spots,) = ax.collections
            paths = spots.get_paths()
            assert len(paths) == t.n_obs
            centres = np.array([(p.vertices.min(axis=0) + p.vertices.max(axis=0)) / 2 for p in paths])
            expected = t.obsm["spatial"] * sf["tissue_hires_scalef"]
            np.testing.assert_allclose(centres[np.lexsort(centres.T)], expected[np.lexsort(expected.T)], atol=0.5)
    finally:
        plt.close("all")
