from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hist_sd as hs


@pytest.fixture(scope="module")
def crop_section(b4_crop):
    img, counts, spots = b4_crop
    return hs.io.read_st(counts, spots, img, section="B4crop", patient="B", scale_factors=(2,))


def test_round_trip_read_st(crop_section, tmp_path: Path, sdata_equal):
    path = hs.io.write_zarr(crop_section, tmp_path / "st.zarr")
    assert crop_section.path == path  # like SpatialData.write, and never the temporary store
    back = hs.io.read_zarr(path)
    sdata_equal(crop_section, back)
    t = back.tables["table"]
    assert t.uns["hist_sd"]["technology"] == "st" and t.uns["hist_sd"]["image_key"] == "B4crop_full_image"
    assert hs.io.image_mpp(back) == pytest.approx(crop_section.tables["table"].uns["hist_sd"]["mpp"])


def test_round_trip_read_visium(visium_dir: Path, tmp_path: Path, sdata_equal):
    sd = hs.io.read_visium(visium_dir, image="lowres", scale_factors=(2,))
    back = hs.io.read_zarr(hs.io.write_zarr(sd, tmp_path / "v.zarr"))
    sdata_equal(sd, back)
    assert back.tables["table"].uns["hist_sd"]["coordinate_system"] == "visium_fixture_downscaled_lowres"


def test_round_trip_read_image(b4_crop, tmp_path: Path, sdata_equal):
    sd = hs.io.read_image(b4_crop[0], mpp=0.69, name="bare", scale_factors=(2, 2))
    back = hs.io.read_zarr(hs.io.write_zarr(sd, tmp_path / "img.zarr"))
    sdata_equal(sd, back)
    assert hs.io.image_mpp(back) == 0.69  # the scale of a bare image survives the store


def test_write_zarr_refuses_existing_store(b4_crop, tmp_path: Path):
    a = hs.io.read_image(b4_crop[0][:128, :128], mpp=0.5, name="a", scale_factors=None)
    b = hs.io.read_image(b4_crop[0][:96, :96], mpp=0.5, name="b", scale_factors=None)
    path = hs.io.write_zarr(a, tmp_path / "x.zarr")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        hs.io.write_zarr(b, path)
    assert list(hs.io.read_zarr(path).images) == ["a_full_image"]  # untouched
    hs.io.write_zarr(b, path, overwrite=True)
    back = hs.io.read_zarr(path)
    assert list(back.images) == ["b_full_image"]
    assert [p.name for p in tmp_path.iterdir()] == ["x.zarr"]  # no temporary store left behind
    with pytest.raises(FileNotFoundError, match="`path`"):
        hs.io.read_zarr(tmp_path / "missing.zarr")
    assert np.asarray(back.images["b_full_image"].values).shape == (3, 96, 96)
    # a store can be rewritten from the lazily loaded object it was read into
    hs.io.set_image_mpp(back, 0.25)
    hs.io.write_zarr(back, path, overwrite=True)
    again = hs.io.read_zarr(path)
    assert hs.io.image_mpp(again) == 0.25
    np.testing.assert_array_equal(again.images["b_full_image"].values, b4_crop[0][:96, :96].transpose(2, 0, 1))
