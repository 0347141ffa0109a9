from __future__ import annotations

import logging
import os
import time
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


def test_read_zarr_refuses_what_is_not_a_store(tmp_path: Path, b4_crop):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a store")
    afile = tmp_path / "image.png"
    afile.write_bytes(b"\x89PNG")
    for path in (folder, afile):
        with pytest.raises(ValueError, match=rf"`path`.*{path.name}.*not a SpatialData zarr store"):
            hs.io.read_zarr(path)
    # a real store still reads
    sd = hs.io.read_image(b4_crop[0][:64, :64], mpp=0.5, name="a", scale_factors=None)
    hs.io.write_zarr(sd, tmp_path / "ok.zarr")
    assert list(hs.io.read_zarr(tmp_path / "ok.zarr").images) == ["a_full_image"]


def _age(path: Path, seconds: float = 3600.0) -> None:
    """Set the modification times of ``path`` and what it holds ``seconds`` into the past."""
    t = time.time() - seconds
    for p in [*path.rglob("*"), path]:
        os.utime(p, (t, t))


def test_write_zarr_cleans_stale_temporaries(tmp_path: Path, b4_crop, caplog):
    """Leftovers of an interrupted write of this store (atomic_path's `.name.tmp-xxxxxxxx` / `.old-`) go."""
    sd = hs.io.read_image(b4_crop[0][:64, :64], mpp=0.5, name="a", scale_factors=None)
    path = hs.io.write_zarr(sd, tmp_path / "x.zarr")
    stale = [tmp_path / ".x.zarr.tmp-0a1b2c3d", tmp_path / ".x.zarr.old-deadbeef"]
    keep = [tmp_path / n for n in (".x.zarr.tmp-notes", ".y.zarr.tmp-0a1b2c3d", "x.zarr.tmp-0a1b2c3d",
                                   ".x.zarr.tmp-0a1b2c3d.bak", ".xx.zarr.old-deadbeef", ".x.zarr.tmp-0A1B2C3D")]
    for p in stale + keep:
        p.mkdir()
        (p / "zarr.json").write_text("{}")
        _age(p)
    fresh = tmp_path / ".x.zarr.tmp-11112222"  # changed just now: maybe a write in progress elsewhere
    fresh.mkdir()
    keep.append(fresh)
    with caplog.at_level(logging.INFO, logger="hist_sd"):
        hs.io.write_zarr(sd, path, overwrite=True)
    assert not any(p.exists() for p in stale)
    assert all(p.is_dir() for p in keep)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert all(p.name in logged for p in stale)
    assert list(hs.io.read_zarr(path).images) == ["a_full_image"]
    # no store at `path`: an `.old-` folder may be the only copy of the previous store; it is kept (warned)
    old = tmp_path / ".new.zarr.old-12345678"
    old.mkdir()
    tmp = tmp_path / ".new.zarr.tmp-12345678"
    tmp.mkdir()
    _age(old)
    _age(tmp)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hist_sd"):
        hs.io.write_zarr(sd, tmp_path / "new.zarr")
    assert old.is_dir() and not tmp.exists()
    assert any(r.levelno == logging.WARNING and old.name in r.getMessage() for r in caplog.records)


def _levels(element) -> list:
    return [next(iter(element[k].data_vars.values())) for k in sorted(element.children)]


def test_in_memory_pyramid_carries_level_scales(b4, b4_back):
    """Every pyramid level maps to full-resolution pixels in memory as after a zarr round trip."""
    from spatialdata import bounding_box_query
    from spatialdata.transformations import get_transformation

    key = b4.tables["table"].uns["hist_sd"]["image_key"]
    for mem, back in zip(_levels(b4.images[key]), _levels(b4_back.images[key]), strict=True):
        tm = get_transformation(mem, "global").to_affine_matrix(("y", "x"), ("y", "x"))
        tb = get_transformation(back, "global").to_affine_matrix(("y", "x"), ("y", "x"))
        np.testing.assert_allclose(tm, tb)
        np.testing.assert_allclose(mem.coords["x"].values, back.coords["x"].values)
        np.testing.assert_allclose(mem.coords["y"].values, back.coords["y"].values)
    box = {"axes": ("x", "y"), "min_coordinate": [2000, 3000], "max_coordinate": [5000, 5000],
           "target_coordinate_system": "global"}
    got = _levels(bounding_box_query(b4, **box).images[key])
    ref = _levels(bounding_box_query(b4_back, **box).images[key])
    assert [a.shape for a in got] == [a.shape for a in ref] == [(3, 2000, 3000), (3, 1000, 1500), (3, 500, 750),
                                                                (3, 250, 375)]
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_allclose(a.coords["x"].values, b.coords["x"].values)
