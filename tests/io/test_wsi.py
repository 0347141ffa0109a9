"""hs.io.read_wsi on the real Aperio SVS and on small pyramidal TIFFs written here; read_image's pixel guard."""

from __future__ import annotations

import logging
import pickle
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from spatialdata.transformations import get_transformation

import hist_sd as hs
from hist_sd._core._image import block_mean, get_image, image_levels

SVS_SHAPE = (3, 2967, 2220)
SVS_MPP = 0.499


@pytest.fixture
def tile_reads(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts the file tiles tifffile decodes, by zarr key prefix (``"0/"`` level 0 of a TIFF; ``""`` for SVS)."""
    from tifffile import zarr as tz

    counts: Counter = Counter()
    orig = tz.ZarrTiffStore.get

    async def get(self, key, *args, **kwargs):
        if re.search(r"(^|/)\d+\.\d+\.\d+$", key):
            counts[key.rpartition("/")[0]] += 1
        return await orig(self, key, *args, **kwargs)

    monkeypatch.setattr(tz.ZarrTiffStore, "get", get)
    return counts


def test_real_svs_lazy_pyramid(svs: Path, svs_rgb: np.ndarray, tile_reads: Counter) -> None:
    sdata = hs.io.read_wsi(svs)
    key = "CMU-1-Small-Region_full_image"
    assert list(sdata.images) == [key] and not sdata.tables and not sdata.shapes
    assert hs.io.image_mpp(sdata) == pytest.approx(SVS_MPP)
    info = sdata.attrs["hist_sd"]["wsi"][key]
    assert info["vendor"] == "aperio" and info["mpp_source"] == "metadata" and info["level_downsamples"] == [1.0]
    assert Path(info["path"]) == svs.resolve()
    element = sdata.images[key]
    assert sorted(element.children) == ["scale0"]  # this small region has no lower-resolution level
    img = get_image(sdata)
    assert img.dims == ("c", "y", "x") and img.shape == SVS_SHAPE and img.dtype == np.uint8
    assert list(img.coords["c"].values) == ["r", "g", "b"]
    assert {k: type(t).__name__ for k, t in get_transformation(element, get_all=True).items()} == {"global": "Identity"}
    # opening decoded one tile (the file check), of the 10 x 13 tiles of 240 px
    assert sum(tile_reads.values()) <= 1
    tile_reads.clear()
    patch = np.asarray(img.data[:, 1000:1256, 700:956])
    assert 1 <= sum(tile_reads.values()) <= 4  # only the tiles under the 256 px window
    np.testing.assert_array_equal(np.moveaxis(patch, 0, -1), svs_rgb[1000:1256, 700:956])
    # the dask array pickles (dask.distributed workers reopen the file) and reads the same pixels
    again = pickle.loads(pickle.dumps(img.data[:, :64, :64]))
    np.testing.assert_array_equal(np.asarray(again), np.moveaxis(svs_rgb[:64, :64], -1, 0))


def test_pyramid_levels_and_scale_transforms(pyramid_tiff: Path, svs_rgb: np.ndarray, tile_reads: Counter) -> None:
    sdata = hs.io.read_wsi(pyramid_tiff, name="pyr")
    assert hs.io.image_mpp(sdata) == pytest.approx(SVS_MPP)  # from the TIFF resolution tags
    levels = image_levels(sdata.images["pyr_full_image"])
    assert [n for n, _ in levels] == ["scale0", "scale1", "scale2"]
    assert [tuple(lev.shape) for _, lev in levels] == [SVS_SHAPE, (3, 741, 555), (3, 185, 138)]
    for _, lev in levels:
        assert lev.dtype == np.uint8 and lev.dims == ("c", "y", "x")
        t = get_transformation(lev, "global")
        m = t.to_affine_matrix(input_axes=("y", "x"), output_axes=("y", "x"))
        # each level maps onto full-resolution pixels: Scale(level-0 shape / level shape)
        np.testing.assert_allclose(np.diag(m)[:2], np.array(SVS_SHAPE[1:]) / np.array(lev.shape[1:]))
    tile_reads.clear()
    coarse = np.asarray(levels[2][1].data)
    assert set(tile_reads) == {"2"}  # reading the coarse level decodes none of the finer ones
    expected = block_mean(block_mean(np.moveaxis(svs_rgb, -1, 0), 4, dtype=np.uint8), 4, dtype=np.float32)
    assert np.abs(coarse.astype(np.float32) - expected).mean() < 3  # JPEG tiles: close, not equal
    # any dask / xarray indexing of a level gives the file's pixels (integers, lists, steps, negative indices)
    full = np.moveaxis(tifffile.imread(pyramid_tiff, key=0), -1, 0)
    lev0 = levels[0][1]
    np.testing.assert_array_equal(np.asarray(lev0.data[:, [300, 7, 2000], 5]), full[:, [300, 7, 2000], 5])
    np.testing.assert_array_equal(np.asarray(lev0.data[1, 100:400:7, -3:]), full[1, 100:400:7, -3:])
    np.testing.assert_array_equal(lev0.isel(c=2, y=[4, 2], x=[1, 6]).values, full[2][[4, 2]][:, [1, 6]])


def test_missing_mpp_refused_unless_given(tmp_path: Path, svs_rgb: np.ndarray, svs: Path, caplog) -> None:
    path = tmp_path / "nores.tif"
    tifffile.imwrite(path, svs_rgb[:600, :500], tile=(256, 256), photometric="rgb")  # no resolution tags
    with pytest.raises(ValueError, match=r"nores\.tif.*no resolution.*`mpp=`"):
        hs.io.read_wsi(path)
    sdata = hs.io.read_wsi(path, mpp=0.25)
    assert hs.io.image_mpp(sdata) == 0.25
    assert sdata.attrs["hist_sd"]["wsi"]["nores_full_image"]["mpp_source"] == "argument"
    # a print resolution (72 dpi = 353 µm per pixel) is no microscope's: refused as missing
    dpi = tmp_path / "dpi.tif"
    tifffile.imwrite(dpi, svs_rgb[:300, :300], tile=(256, 256), photometric="rgb", resolution=(72, 72),
                     resolutionunit="INCH")
    with pytest.raises(ValueError, match="no resolution"):
        hs.io.read_wsi(dpi)
    # OME-TIFF: PhysicalSizeX in the OME-XML
    ome = tmp_path / "slide.ome.tif"
    tifffile.imwrite(ome, svs_rgb[:512, :512], tile=(256, 256), photometric="rgb",
                     metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25})
    sd_ome = hs.io.read_wsi(ome)
    assert list(sd_ome.images) == ["slide_full_image"] and hs.io.image_mpp(sd_ome) == pytest.approx(0.25)
    # `mpp=` against the slide's metadata: the argument wins, with a warning
    with caplog.at_level(logging.WARNING, logger="hist_sd"):
        sd_svs = hs.io.read_wsi(svs, mpp=0.25)
    assert hs.io.image_mpp(sd_svs) == 0.25
    assert any("differs from the slide's metadata" in r.getMessage() for r in caplog.records)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="`mpp`"):
            hs.io.read_wsi(svs, mpp=bad)


def test_corrupt_or_wrong_files(tmp_path: Path, svs: Path, svs_rgb: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    junk = tmp_path / "junk.svs"
    junk.write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"junk\.svs.*could not be read as a whole-slide image"):
        hs.io.read_wsi(junk)
    truncated = tmp_path / "truncated.svs"
    truncated.write_bytes(svs.read_bytes()[: svs.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated\.svs.*truncated or corrupt"):
        hs.io.read_wsi(truncated)
    with pytest.raises(FileNotFoundError, match="missing.svs"):
        hs.io.read_wsi(tmp_path / "missing.svs")
    gray = tmp_path / "gray.tif"
    tifffile.imwrite(gray, svs_rgb[:300, :300, 0], tile=(256, 256))
    with pytest.raises(ValueError, match="not an RGB slide"):
        hs.io.read_wsi(gray, mpp=0.5)
    with pytest.raises(ValueError, match="`name`"):
        hs.io.read_wsi(svs, name="")


def test_read_image_keeps_pils_pixel_guard(tmp_path: Path, svs_rgb: np.ndarray, monkeypatch) -> None:
    """read_image never switches PIL's decompression-bomb guard off; `max_pixels` allows one large image."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    path = tmp_path / "big.png"
    Image.fromarray(svs_rgb[:200, :200]).save(path)  # 40,000 px: over twice the (patched) limit
    with pytest.raises(ValueError, match=r"big\.png.*larger than allowed.*`max_pixels=`"):
        hs.io.read_image(path, mpp=0.5, scale_factors=None, max_pixels=None)  # PIL's own guard
    with pytest.raises(ValueError, match=r"big\.png.*larger than allowed"):
        hs.io.read_image(path, mpp=0.5, scale_factors=None, max_pixels=30_000)
    sdata = hs.io.read_image(path, mpp=0.5, scale_factors=None, max_pixels=40_000)
    np.testing.assert_array_equal(np.moveaxis(get_image(sdata).values, 0, -1), svs_rgb[:200, :200])
    assert Image.MAX_IMAGE_PIXELS == 10_000  # restored, never None
    with pytest.raises(ValueError, match="larger than allowed"):
        hs.io.read_image(path, mpp=0.5, max_pixels=39_999)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="`max_pixels`"):
            hs.io.read_image(path, mpp=0.5, max_pixels=bad)
    assert Image.MAX_IMAGE_PIXELS == 10_000
