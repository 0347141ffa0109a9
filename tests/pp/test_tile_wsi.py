"""hs.pp.tile on whole slides: over the stored tissue, at a physical size or HiST's fixed grid, without reading
full-resolution pixels; then hs.pp.features on a few tiles of the real SVS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from spatialdata import SpatialData

import hist_sd as hs

MPP = 0.499


@pytest.fixture(scope="module")
def tiled(svs: Path) -> SpatialData:
    sdata = hs.io.read_wsi(svs)
    hs.pp.detect_tissue(sdata)
    hs.pp.tile(sdata, tile_um=100.0)
    return sdata


def test_tiles_over_the_stored_tissue(tiled: SpatialData) -> None:
    t = tiled.tables["tiles"]
    assert t.uns["tiles"]["params"]["tissue_key"] == "tissue"
    assert t.uns["hist_sd"]["tile_px"] == pytest.approx(100.0 / MPP)
    assert 30 < t.n_obs < 120  # about 0.62 mm² of tissue in (0.1 mm)² tiles
    tissue = shapely.union_all(tiled.shapes["tissue"].geometry)
    squares = tiled.shapes["tiles_shapes"].geometry
    frac = np.array([sq.intersection(tissue).area / sq.area for sq in squares])
    assert frac.min() >= 0.4 and np.median(frac) > 0.9  # min_tissue=0.5 on the rasterised polygons
    np.testing.assert_allclose(t.obs["tissue_fraction"], frac, atol=0.1)
    # every tile of the grid box with most of its area on tissue is kept
    assert t.n_obs >= (frac >= 0.5).sum()
    # the image's preview for scanpy/squidpy plots is in the table
    lib = t.uns["spatial"]["CMU-1-Small-Region"]
    assert lib["images"]["hires"].shape[2] == 3


def test_features_on_a_few_wsi_tiles(tiled: SpatialData) -> None:
    t = tiled.tables["tiles"]
    key = t.uns["hist_sd"]["image_key"]
    few = SpatialData(images={key: tiled.images[key]}, shapes={"tiles_shapes": tiled.shapes["tiles_shapes"]},
                      tables={"tiles": t[:6].copy()}, attrs=dict(tiled.attrs))
    hs.pp.features(few, table_key="tiles", batch_size=3, progress=False)
    x = few.tables["tiles"].obsm["X_hist"]
    assert x.shape == (6, 1280) and np.isfinite(x).all() and np.linalg.matrix_rank(x) == 6


def test_tile_never_reads_level_0_of_a_pyramid(pyramid_tiff: Path, level_reads: list[int]) -> None:
    sdata = hs.io.read_wsi(pyramid_tiff, name="pyr")
    hs.pp.detect_tissue(sdata)
    level_reads.clear()
    hs.pp.tile(sdata, tile_um=100.0)
    assert 0 not in level_reads  # the mask comes from the polygons, the table's preview from a coarse level
    with_shapes = sdata.tables["tiles"]
    # without stored tissue the mask is computed from a coarse level, never level 0 either
    bare = SpatialData(images=dict(sdata.images), attrs={"hist_sd": {"image_mpp": dict(
        sdata.attrs["hist_sd"]["image_mpp"])}})
    level_reads.clear()
    hs.pp.tile(bare, tile_um=100.0)
    assert level_reads and 0 not in level_reads
    assert "tissue_key" not in bare.tables["tiles"].uns["tiles"]["params"]
    # both masks give nearly the same tiles
    a, b = (set(tab.obs_names) for tab in (with_shapes, bare.tables["tiles"]))
    assert len(a & b) / len(a | b) > 0.8
    level_reads.clear()
    hs.pp.tile(sdata, shape=(80, 64), key_added="fixed")
    assert 0 not in level_reads


def test_fixed_grid_on_the_real_slide(tiled: SpatialData) -> None:
    """HiST's grid: the tissue bounding box cut into 80 x 64 square cells, the cells on tissue kept."""
    hs.pp.tile(tiled, shape=(80, 64), key_added="hist")
    t = tiled.tables["hist"]
    assert t.obs["array_row"].max() <= 79 and t.obs["array_col"].max() <= 63
    side = t.uns["hist_sd"]["tile_px"]
    x0, y0, x1, y1 = tiled.shapes["tissue"].total_bounds
    assert side == pytest.approx(max((y1 - y0) / 80, (x1 - x0) / 64), rel=0.05)
    assert (t.obs["tissue_fraction"] >= 0.5).all() and t.n_obs > 1000
    del tiled.tables["hist"], tiled.shapes["hist_shapes"]


def test_tile_larger_than_the_tissue_is_refused(tiled: SpatialData) -> None:
    with pytest.raises(ValueError, match=r"`tile_um`=2000 µm is larger than the tissue \(\d+ x \d+ µm\)"):
        hs.pp.tile(tiled, tile_um=2000.0, key_added="big")
    assert "big" not in tiled.tables
    hs.pp.tile(tiled, tile_um=500.0, key_added="coarse")  # smaller than the tissue's extent: tiles
    assert tiled.tables["coarse"].n_obs >= 2
    with pytest.raises(KeyError, match="`tissue_key`='nope'"):
        hs.pp.tile(tiled, tissue_key="nope", key_added="x")


def test_features_read_the_coarsest_level_that_keeps_the_patch_resolution(pyramid_tiff: Path,
                                                                           level_reads: list[int]) -> None:
    """500 µm patches (1,002 px at level 0) come from level 1 (250 px >= 224), never level 0 or 2 (63 px)."""
    sdata = hs.io.read_wsi(pyramid_tiff, name="pyr")
    hs.pp.tile(sdata, tile_um=500.0)
    t = sdata.tables["tiles"]
    few = SpatialData(images=dict(sdata.images), tables={"tiles": t[:3].copy()}, attrs=dict(sdata.attrs))
    level_reads.clear()
    hs.pp.features(few, table_key="tiles", patch_um=500.0, batch_size=3, progress=False)
    assert set(level_reads) == {1}
    x = few.tables["tiles"].obsm["X_hist"]
    assert x.shape == (3, 1280) and np.isfinite(x).all()


def test_slide_tiles_read_without_the_gaps_between_them(svs: Path) -> None:
    """Spaced tiles of a lazy slide are read in runs of neighbours, never as one bounding box per batch."""
    from hist_sd._core._image import image_levels
    from hist_sd.encoders._patches import PatchReader, raster_order

    sdata = hs.io.read_wsi(svs)
    hs.pp.detect_tissue(sdata)
    hs.pp.tile(sdata, tile_um=200.0)  # 200 µm apart, 100 µm patches: three quarters of the box is gap
    t = sdata.tables["tiles"]
    level = image_levels(sdata.images[t.uns["hist_sd"]["image_key"]])[0][1]
    xy = t.obsm["spatial"]
    p = round(100.0 / MPP)
    reader = PatchReader(level, xy, p, 224)
    eager = PatchReader(np.asarray(level.data), xy, p, 224)
    order = raster_order(xy, p)
    for start in range(0, len(order), 16):
        idx = order[start : start + 16]
        np.testing.assert_array_equal(reader.read(idx), eager.read(idx))
    assert reader.pixels_read <= 1.5 * len(xy) * p * p
    assert eager.reads == -(-len(order) // 16)  # in memory: one view per batch
