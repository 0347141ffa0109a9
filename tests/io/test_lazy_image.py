"""Spot-image JPEGs read lazily (pyvips): nothing decoded at read, regions decoded on demand, pixels as PIL's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hist_sd as hs
from hist_sd._core._image import block_mean, image_levels, region_reader
from hist_sd.encoders._patches import PatchReader
from hist_sd.io import _lazy_image

pytest.importorskip("pyvips")

B4_JPG = ("her2st", "data", "ST-imgs", "B", "B4", "BT10737_D2_HE.jpg")


@pytest.fixture(scope="module")
def b4_jpg(data_dir: Path) -> Path:
    return data_dir.joinpath(*B4_JPG)


@pytest.fixture(scope="module")
def b4_pil(b4_jpg: Path) -> np.ndarray:
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(b4_jpg) as im:
            return np.asarray(im)
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    calls: list[tuple[int, ...]] = []
    original = _lazy_image.JPEGSource.read

    def counting(self, y0, y1, x0, x1, *, factor=1):
        calls.append((factor, y0, y1, x0, x1))
        return original(self, y0, y1, x0, x1, factor=factor)

    monkeypatch.setattr(_lazy_image.JPEGSource, "read", counting)
    return calls


def test_reading_decodes_only_the_preview(b4_jpg: Path, b4_pil: np.ndarray, monkeypatch) -> None:
    calls = _count_reads(monkeypatch)
    sdata = hs.io.read_image(b4_jpg, mpp=1.0)
    levels = image_levels(sdata.images[f"{b4_jpg.name.split('.')[0]}_full_image"])
    assert [tuple(a.shape) for _, a in levels] == [(3, 9923, 9272), (3, 4961, 4636), (3, 2480, 2318), (3, 1240, 1159)]
    assert all(f == 8 for f, *_ in calls), calls  # nothing but the 1/8 preview level was decoded
    assert region_reader(levels[0][1]) is not None
    # a region of level 0: decoded alone, identical to PIL's whole decode
    calls.clear()
    region = np.asarray(levels[0][1].data[:, 4000:4300, 2500:2900])
    np.testing.assert_array_equal(region, np.moveaxis(b4_pil[4000:4300, 2500:2900], -1, 0))
    assert calls == [(1, 4000, 4300, 2500, 2900)]
    # strided reads as dask passes them
    np.testing.assert_array_equal(np.asarray(levels[0][1].data[1, 100:900:7, 5000]), b4_pil[100:900:7, 5000, 1])
    # coarse levels: libjpeg's DCT scaling, within a few grey levels of exact block means
    crop = np.moveaxis(b4_pil[:2048, :2048], -1, 0)
    exact = block_mean(crop, 4, dtype=np.float64)
    lazy = np.asarray(levels[2][1].data[:, :512, :512], dtype=np.float64)
    assert np.abs(lazy - exact).mean() < 1.0


def test_eager_and_lazy_reads_agree(b4_jpg: Path, monkeypatch) -> None:
    sdata = hs.io.read_image(b4_jpg, mpp=1.0, lazy=False, scale_factors=None, max_pixels=100_000_000)
    level0 = image_levels(next(iter(sdata.images.values())))[0][1]
    assert region_reader(level0) is None
    monkeypatch.setattr(_lazy_image, "_pyvips", lambda: None)  # without pyvips: decoded whole, as before
    sdata = hs.io.read_image(b4_jpg, mpp=1.0, scale_factors=None, max_pixels=100_000_000)
    again = image_levels(next(iter(sdata.images.values())))[0][1]
    assert region_reader(again) is None
    np.testing.assert_array_equal(np.asarray(again.data[:, 5000:5100, 10:90]), np.asarray(level0.data[:, 5000:5100, 10:90]))


def test_patch_reader_decodes_one_window(b4: object, b4_pil: np.ndarray) -> None:
    image = image_levels(b4.images["B4_full_image"])[0][1]
    xy = b4.tables["table"].obsm["spatial"]
    lazy = PatchReader(image, xy, 145, 224)
    eager = PatchReader(np.moveaxis(b4_pil, -1, 0), xy, 145, 224)
    order = np.lexsort((xy[:, 0], np.floor(xy[:, 1] / 145)))
    for start in range(0, len(order), 16):
        idx = order[start : start + 16]
        np.testing.assert_array_equal(lazy.read(idx), eager.read(idx))
    assert lazy.reads == 1 and eager.reads == -(-len(order) // 16)  # the spots' rows decoded once, not per batch
    full = b4_pil.shape[0] * b4_pil.shape[1]
    assert lazy.pixels_read < 0.8 * full  # only the spots' bounding band, not the whole JPEG
    # a small window budget: several windows, in one downward pass (each row decoded about once)
    small = PatchReader(image, xy, 145, 224, window_bytes=40 * 2**20)
    for start in range(0, len(order), 16):
        small.read(order[start : start + 16])
    assert 2 <= small.reads <= 8 and small.pixels_read < 1.5 * lazy.pixels_read


def test_truncated_or_grey_jpeg_refused_at_read(b4_jpg: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(b4_jpg.read_bytes()[:200_000])
    with pytest.raises(ValueError, match=r"`path`.*cut\.jpg.*truncated"):
        hs.io.read_image(truncated, mpp=1.0)
    grey = tmp_path / "grey.jpg"
    Image.fromarray(np.full((80, 80), 128, np.uint8)).save(grey)
    with pytest.raises(ValueError, match=r"`path`.*8-bit RGB.*grey\.jpg.*1 band"):
        hs.io.read_image(grey, mpp=1.0)


def test_lazy_image_pickles_for_dask_workers(b4_jpg: Path, b4_pil: np.ndarray) -> None:
    import pickle

    sdata = hs.io.read_image(b4_jpg, mpp=1.0, scale_factors=None)
    level = image_levels(next(iter(sdata.images.values())))[0][1]
    again = pickle.loads(pickle.dumps(level))
    np.testing.assert_array_equal(np.asarray(again.data[:, 10:20, 30:40]), np.moveaxis(b4_pil[10:20, 30:40], -1, 0))
