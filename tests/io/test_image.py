from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hist_sd as hs
from hist_sd._core._image import get_image
from hist_sd.io._build import load_rgb


@pytest.fixture(scope="module")
def crop_png(b4_crop, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "slide_1.png"
    Image.fromarray(b4_crop[0]).save(path)
    return path


def test_read_image_from_file(crop_png: Path, b4_crop):
    sd = hs.io.read_image(crop_png, mpp=0.69, scale_factors=(2,))
    assert list(sd.images) == ["slide_1_full_image"] and len(sd.tables) == 0 and len(sd.shapes) == 0
    img = get_image(sd)
    assert img.dims == ("c", "y", "x") and img.dtype == np.uint8
    np.testing.assert_array_equal(np.moveaxis(img.values, 0, -1), b4_crop[0])
    assert hs.io.image_mpp(sd) == pytest.approx(0.69)
    assert hs.io.image_mpp(sd, "slide_1_full_image") == pytest.approx(0.69)
    from spatialdata.transformations import get_transformation

    assert set(get_transformation(sd.images["slide_1_full_image"], get_all=True)) == {"global"}
    # a two-level pyramid: full resolution and half
    assert sorted(sd.images["slide_1_full_image"].children) == ["scale0", "scale1"]


def test_read_image_from_array_and_name(b4_crop):
    sd = hs.io.read_image(b4_crop[0][:256, :300], mpp=0.5, name="tile", scale_factors=None)
    assert list(sd.images) == ["tile_full_image"]
    assert get_image(sd).shape == (3, 256, 300)
    assert hs.io.image_mpp(sd) == 0.5
    sd2 = hs.io.read_image(np.moveaxis(b4_crop[0][:64, :64], -1, 0), mpp=0.25, scale_factors=None)
    assert list(sd2.images) == ["image_full_image"]  # (c, y, x) arrays are accepted too


def test_read_image_bad_input(tmp_path: Path, b4_crop):
    gray = tmp_path / "gray.png"
    Image.fromarray(b4_crop[0][..., 0]).convert("L").save(gray)
    with pytest.raises(ValueError, match="mode 'L'"):
        hs.io.read_image(gray, mpp=0.5)
    with pytest.raises(FileNotFoundError, match="`path`"):
        hs.io.read_image(tmp_path / "missing.jpg", mpp=0.5)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="`mpp`"):
            hs.io.read_image(b4_crop[0][:64, :64], mpp=bad)
    with pytest.raises(TypeError, match="`mpp`"):
        hs.io.read_image(b4_crop[0][:64, :64], mpp="half")
    with pytest.raises(ValueError, match=r"\(y, x, 3\)"):
        hs.io.read_image(np.zeros((64, 64), np.uint8), mpp=0.5)


def test_image_mpp_sources(b4, b4_crop):
    # readers record the scale in sdata.attrs; it agrees with the table's
    assert hs.io.image_mpp(b4) == pytest.approx(b4.tables["table"].uns["hist_sd"]["mpp"])
    sd = hs.io.read_image(b4_crop[0][:128, :128], mpp=0.5, name="a", scale_factors=None)
    sd.attrs.clear()
    with pytest.raises(KeyError, match="No µm per pixel"):
        hs.io.image_mpp(sd)
    hs.io.set_image_mpp(sd, 0.25)
    assert hs.io.image_mpp(sd) == 0.25
    with pytest.raises(KeyError, match="`image_key`"):
        hs.io.image_mpp(sd, "b_full_image")
    with pytest.raises(ValueError, match="`mpp`"):
        hs.io.set_image_mpp(sd, -2)
    with pytest.raises(TypeError, match="`sdata`"):
        hs.io.image_mpp(b4.tables["table"])


def test_read_image_integer_dtypes_by_their_range(b4_crop):
    """uint16 is scaled by its range (/257, rounded), never clipped; other integer dtypes too or refused."""
    crop = b4_crop[0][:64, :80]
    # an 8-bit image widened to 16 bits (v * 257) comes back exactly
    sd = hs.io.read_image(crop.astype(np.uint16) * 257, mpp=0.5, scale_factors=None)
    np.testing.assert_array_equal(np.moveaxis(get_image(sd).values, 0, -1), crop)
    # arbitrary 16-bit values: rounded v / 257 (a clip to 255 would make almost everything white)
    rng = np.random.default_rng(0)
    v16 = rng.integers(0, 65536, size=(32, 32, 3)).astype(np.uint16)
    got = load_rgb(v16)
    np.testing.assert_array_equal(got, np.rint(v16 / 257.0).astype(np.uint8))
    assert got.mean() < 200  # the clip gave ~255 everywhere
    v32 = (crop.astype(np.uint32) * 16843009).astype(np.uint32)  # 8-bit values spread over uint32
    np.testing.assert_array_equal(load_rgb(v32), crop)
    # signed integers hold 8-bit values or are refused (negative values are no colour)
    np.testing.assert_array_equal(load_rgb(crop.astype(np.int64)), crop)
    with pytest.raises(ValueError, match=r"`path`.*int16.*0\.\.255"):
        hs.io.read_image(crop.astype(np.int16) - 10, mpp=0.5, scale_factors=None)
    with pytest.raises(ValueError, match="`path`.*bool"):
        hs.io.read_image(crop > 100, mpp=0.5, scale_factors=None)


def test_read_image_float_ranges(b4_crop):
    crop = b4_crop[0][:64, :80]
    np.testing.assert_array_equal(load_rgb(crop / 255.0), crop)  # 0..1
    np.testing.assert_array_equal(load_rgb(crop.astype(np.float32)), crop)  # whole numbers 0..255
    np.testing.assert_array_equal(load_rgb(crop + 0.2), np.rint(crop + 0.2).astype(np.uint8))  # clearly 0..255
    for bad, why in ((crop / 255.0 * 1.3, r"0\.\.1"), (crop * 2.0, r"0\.\.255"), (crop / 255.0 - 0.5, "negative"),
                     (np.full(crop.shape, np.nan), "NaN")):
        with pytest.raises(ValueError, match=rf"`path`.*{why}"):
            hs.io.read_image(bad, mpp=0.5, scale_factors=None)


def test_read_image_truncated_or_corrupt_file(b4_crop, tmp_path: Path):
    good = tmp_path / "good.jpg"
    Image.fromarray(b4_crop[0]).save(good, quality=90)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"<html>not found</html>" * 20)
    for path in (truncated, garbage):
        with pytest.raises(ValueError, match=rf"`path`.*{path.name}.*JPEG, PNG or TIFF"):
            hs.io.read_image(path, mpp=0.5, scale_factors=None)
    # read_st names its own argument
    img, counts, spots = b4_crop
    with pytest.raises(ValueError, match=r"`image`.*truncated\.jpg"):
        hs.io.read_st(counts, spots, truncated)
