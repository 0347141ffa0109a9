from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hist_sd as hs
from hist_sd._core._image import get_image


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
