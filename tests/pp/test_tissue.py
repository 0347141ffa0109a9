"""hs.pp.detect_tissue on the real SVS and on a pyramidal TIFF of its pixels; mask <-> polygon conversions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from scipy import ndimage

import hist_sd as hs
from hist_sd._core._image import get_image
from hist_sd._core._tissue import mask_to_polygons, polygons_to_mask
from hist_sd.io._wsi import SlideLevel

MPP = 0.499


@pytest.fixture
def level_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(level, pixels) of every read of a slide level."""
    reads: list[tuple[int, int]] = []
    orig = SlideLevel.__getitem__

    def getitem(self, key):
        out = orig(self, key)
        reads.append((self.level, int(out.size // 3)))
        return out

    monkeypatch.setattr(SlideLevel, "__getitem__", getitem)
    return reads


def _gray(sdata) -> np.ndarray:
    return np.asarray(get_image(sdata).data).mean(axis=0)


def test_detect_tissue_real_svs(svs: Path) -> None:
    sdata = hs.io.read_wsi(svs)
    key = "CMU-1-Small-Region_full_image"
    assert hs.pp.detect_tissue(sdata) is None
    shapes = sdata.shapes["tissue"]
    assert len(shapes) >= 1 and shapes.geometry.is_valid.all()
    assert set(shapes.geometry.geom_type) == {"Polygon"}
    rec = sdata.attrs["hist_sd"]["tissue"]["tissue"]
    assert rec["image_key"] == key and rec["level"] == 0 and rec["target_mpp"] == 8.0
    assert rec["work_mpp"] == pytest.approx(8.0, rel=0.05) and rec["n_polygons"] == len(shapes)
    h, w = 2967, 2220
    frac = float(shapes.geometry.area.sum()) / (h * w)
    assert 0.05 < frac < 0.95
    assert frac == pytest.approx(rec["tissue_area_fraction"], abs=0.02)
    # polygons in full-resolution pixels: inside is darker than outside, and the mask lies within the image
    x0, y0, x1, y1 = shapes.total_bounds
    assert x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h
    inside = polygons_to_mask(shapes.geometry, (h // 8, w // 8), 8.0, 8.0)
    gray = _gray(sdata)[4::8, 4::8][: h // 8, : w // 8]
    assert gray[inside].mean() < gray[~inside].mean() - 40
    assert np.median(gray[~inside]) > 200  # the glass
    # the shapes share the image's coordinate system
    from spatialdata.transformations import get_transformation

    assert set(get_transformation(shapes, get_all=True)) == {"global"}


def test_detect_tissue_reads_a_coarse_level_only(pyramid_tiff: Path, svs: Path, level_reads) -> None:
    sdata = hs.io.read_wsi(pyramid_tiff, name="pyr")
    hs.pp.detect_tissue(sdata)
    assert level_reads and {lev for lev, _ in level_reads} == {2}  # 8 µm/px: the 1/16 level, not level 0
    assert sdata.attrs["hist_sd"]["tissue"]["tissue"]["level"] == 2
    # the same tissue as found on the full-resolution slide
    ref = hs.io.read_wsi(svs)
    hs.pp.detect_tissue(ref)
    a, b = (shapely.union_all(s.shapes["tissue"].geometry) for s in (sdata, ref))
    assert a.intersection(b).area / a.union(b).area > 0.9
    # a finer target reads the finer stored level
    level_reads.clear()
    hs.pp.detect_tissue(sdata, target_mpp=2.5, key_added="fine")
    assert {lev for lev, _ in level_reads} == {1}


def test_detect_tissue_keys_and_errors(svs: Path) -> None:
    sdata = hs.io.read_wsi(svs)
    hs.pp.detect_tissue(sdata, target_mpp=16.0)
    n = len(sdata.shapes["tissue"])
    with pytest.raises(KeyError, match="exists already.*overwrite=True"):
        hs.pp.detect_tissue(sdata)
    hs.pp.detect_tissue(sdata, overwrite=True)
    assert sdata.attrs["hist_sd"]["tissue"]["tissue"]["target_mpp"] == 8.0 and len(sdata.shapes["tissue"]) >= n
    with pytest.raises(KeyError, match="exists already"):
        hs.pp.detect_tissue(sdata, key_added="CMU-1-Small-Region_full_image", overwrite=True)
    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(ValueError, match="`target_mpp`"):
            hs.pp.detect_tissue(sdata, target_mpp=bad, key_added="t2")
    with pytest.raises(TypeError, match="SpatialData"):
        hs.pp.detect_tissue(sdata.images)  # type: ignore[arg-type]
    blank = hs.io.read_image(np.full((400, 400, 3), 240, np.uint8), mpp=1.0, name="blank")
    with pytest.raises(ValueError, match="No tissue"):
        hs.pp.detect_tissue(blank)
    bare = hs.io.read_image(np.full((64, 64, 3), 240, np.uint8), mpp=1.0)
    bare.attrs.clear()
    with pytest.raises(KeyError, match="per pixel"):
        hs.pp.detect_tissue(bare)


def test_mask_polygon_round_trip() -> None:
    """A component with a hole holding an island: polygons keep the hole, rasterising gives the mask back."""
    yy, xx = np.mgrid[:200, :300]
    ring = ((yy - 100) ** 2 + (xx - 120) ** 2 <= 80**2) & ((yy - 100) ** 2 + (xx - 120) ** 2 > 40**2)
    island = (yy - 100) ** 2 + (xx - 120) ** 2 <= 15**2
    blob = (np.abs(yy - 50) < 20) & (np.abs(xx - 260) < 25)
    mask = ring | island | blob
    f = 4.0  # mask pixels of 4 full-resolution pixels
    polys = mask_to_polygons(mask, f, f)
    assert len(polys) == 3 and all(p.is_valid for p in polys)
    assert sorted(len(p.interiors) for p in polys) == [0, 0, 1]
    area = sum(p.area for p in polys) / f**2
    assert area == pytest.approx(mask.sum(), rel=0.03)
    back = polygons_to_mask(polys, mask.shape, f, f)
    assert (back & mask).sum() / (back | mask).sum() > 0.97
    assert not back[100, 120 - 30] and back[100, 120]  # the hole stays empty, the island inside it is kept
    # a finer raster of the same polygons: full-resolution pixel centres
    fine = polygons_to_mask(polys, (800, 1200), 1.0, 1.0)
    coarse = ndimage.zoom(mask, 4, order=0)
    assert (fine & coarse).sum() / (fine | coarse).sum() > 0.95
