from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import hist_sd as hs
from hist_sd._core._image import get_image

SPOT_FULL = 89.42751063343188
HIRES = 0.150015
LOWRES = 0.045004502


@pytest.fixture(scope="module")
def positions(visium_dir: Path) -> pd.DataFrame:
    pos = pd.read_csv(visium_dir / "spatial" / "tissue_positions_list.csv", header=None, index_col=0)
    pos.columns = ["in_tissue", "array_row", "array_col", "pxl_row", "pxl_col"]
    return pos


@pytest.fixture(scope="module")
def visium(visium_dir: Path):
    return hs.io.read_visium(visium_dir, scale_factors=None)


def test_read_visium_hires_layout(visium, positions):
    t = visium.tables["table"]
    assert t.shape == (100, 100)
    assert sparse.issparse(t.X) and np.allclose(t.X.data, np.round(t.X.data)) and t.X.sum() > 0
    assert {"array_row", "array_col", "in_tissue", "section", "patient", "region", "spot_id"} <= set(t.obs)
    assert (t.obs["section"] == "visium_fixture").all() and (t.obs["patient"] == "visium_fixture").all()
    pos = positions.loc[t.obs_names]
    np.testing.assert_array_equal(t.obs["array_row"].to_numpy(), pos["array_row"].to_numpy())
    np.testing.assert_array_equal(t.obs["array_col"].to_numpy(), pos["array_col"].to_numpy())
    # (x, y) = (pxl_col, pxl_row) in full resolution, scaled into the hires PNG
    np.testing.assert_allclose(t.obsm["spatial"], pos[["pxl_col", "pxl_row"]].to_numpy() * HIRES)
    meta = t.uns["hist_sd"]
    assert meta["image_key"] == "visium_fixture_hires_image"
    assert meta["coordinate_system"] == "visium_fixture_downscaled_hires"
    assert meta["technology"] == "visium"
    assert meta["spot_diameter_um"] == 55 and meta["spot_spacing_um"] == 100
    assert meta["mpp"] == pytest.approx(55 / (SPOT_FULL * HIRES))
    assert hs.io.image_mpp(visium) == pytest.approx(meta["mpp"])
    img = get_image(visium, table=t)
    assert img.shape == (3, 2000, 2000) and img.dtype == np.uint8  # the RGBA PNG's opaque alpha is dropped
    circles = visium.shapes[meta["shapes_key"]]
    np.testing.assert_allclose(circles["radius"], SPOT_FULL * HIRES / 2)
    assert t.uns["spatialdata_attrs"]["region"] == "visium_fixture"


def test_read_visium_coordinate_systems(visium):
    from spatialdata.transformations import get_transformation

    cs = set(get_transformation(visium.images["visium_fixture_hires_image"], get_all=True))
    assert cs == {"visium_fixture", "visium_fixture_downscaled_hires"}
    # in the full-resolution system the spots sit at Space Ranger's full-resolution pixels
    to_full = get_transformation(visium.shapes["visium_fixture"], "visium_fixture")
    xy = visium.tables["table"].obsm["spatial"][:3]
    np.testing.assert_allclose(to_full.to_affine_matrix(("x", "y"), ("x", "y"))[:2, :2], np.eye(2) / HIRES)
    assert xy.max() < 2000


def test_read_visium_lowres_and_no_image(visium_dir: Path, positions):
    low = hs.io.read_visium(visium_dir, image="lowres", dataset_id="fx", section="S1", patient="P1", scale_factors=None)
    t = low.tables["table"]
    assert list(low.images) == ["fx_lowres_image"] and list(low.shapes) == ["fx"]
    assert t.uns["hist_sd"]["coordinate_system"] == "fx_downscaled_lowres"
    assert t.uns["hist_sd"]["mpp"] == pytest.approx(55 / (SPOT_FULL * LOWRES))
    assert (t.obs["section"] == "S1").all() and (t.obs["patient"] == "P1").all()

    bare = hs.io.read_visium(visium_dir, image=None)
    tb = bare.tables["table"]
    assert len(bare.images) == 0
    np.testing.assert_allclose(tb.obsm["spatial"], positions.loc[tb.obs_names, ["pxl_col", "pxl_row"]].to_numpy())
    assert tb.uns["hist_sd"]["mpp"] == pytest.approx(55 / SPOT_FULL)
    assert tb.uns["hist_sd"]["coordinate_system"] == "visium_fixture"


@pytest.fixture
def small_fullres(visium_dir: Path, tmp_path: Path) -> Path:
    """A Space Ranger folder whose 'full-resolution' frame is 10x smaller, with a real (lowres) RGB image."""
    from PIL import Image

    out = tmp_path / "outs"
    (out / "spatial").mkdir(parents=True)
    shutil.copy(visium_dir / "filtered_feature_bc_matrix.h5", out)
    pos = pd.read_csv(visium_dir / "spatial" / "tissue_positions_list.csv", header=None)
    pos[[4, 5]] = (pos[[4, 5]] / 10).round().astype(int)
    pos.to_csv(out / "spatial" / "tissue_positions_list.csv", header=False, index=False)
    sf = json.loads((visium_dir / "spatial" / "scalefactors_json.json").read_text())
    sf["spot_diameter_fullres"] /= 10
    (out / "spatial" / "scalefactors_json.json").write_text(json.dumps(sf))
    with Image.open(visium_dir / "spatial" / "tissue_lowres_image.png") as im:
        im.resize((1300, 1300)).save(out / "full.png")
    return out


def test_read_visium_fullres(small_fullres: Path):
    sd = hs.io.read_visium(small_fullres, fullres_image_file="full.png", scale_factors=None)
    t = sd.tables["table"]
    assert list(sd.images) == ["outs_full_image"]
    assert t.uns["hist_sd"]["coordinate_system"] == "outs"
    assert t.uns["hist_sd"]["mpp"] == pytest.approx(55 / (SPOT_FULL / 10))
    pos = pd.read_csv(small_fullres / "spatial" / "tissue_positions_list.csv", header=None, index_col=0)
    np.testing.assert_allclose(t.obsm["spatial"], pos.loc[t.obs_names, [5, 4]].to_numpy())
    assert get_image(sd, table=t).shape == (3, 1300, 1300)


def test_read_visium_bad_input(visium_dir: Path, small_fullres: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="`path`"):
        hs.io.read_visium(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="`counts_file`"):
        hs.io.read_visium(visium_dir, counts_file="raw_feature_bc_matrix.h5")
    with pytest.raises(FileNotFoundError, match="`fullres_image_file`"):
        hs.io.read_visium(visium_dir, fullres_image_file="missing.tif")
    with pytest.raises(ValueError, match="`image`"):
        hs.io.read_visium(visium_dir, image="medium")
    with pytest.raises(ValueError, match="fullres_image_file"):
        hs.io.read_visium(visium_dir, image="full")
    # the lowres PNG is far smaller than the full-resolution frame the spots are given in
    with pytest.raises(ValueError, match="outside the image"):
        hs.io.read_visium(visium_dir, fullres_image_file=visium_dir / "spatial" / "tissue_lowres_image.png")
    (small_fullres / "spatial" / "scalefactors_json.json").unlink()
    with pytest.raises(FileNotFoundError, match="scalefactors"):
        hs.io.read_visium(small_fullres)
