"""Fixtures for the io tests: small real inputs (crops of a her2st image, the Visium fixture) and a deep
comparison of two SpatialData objects for zarr round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse


@pytest.fixture(scope="session")
def her2st_dir(data_dir: Path) -> Path:
    return data_dir / "her2st" / "data"


@pytest.fixture(scope="session")
def visium_dir(data_dir: Path) -> Path:
    return data_dir / "visium_fixture"


@pytest.fixture(scope="session")
def b4_crop(her2st_dir: Path) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """A 1200 x 1200 px crop of B4's H&E image with the counts and spots (pixel coordinates shifted) inside it."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    with Image.open(her2st_dir / "ST-imgs" / "B" / "B4" / "BT10737_D2_HE.jpg") as im:
        spots = pd.read_csv(her2st_dir / "ST-spotfiles" / "B4_selection.tsv", sep="\t")
        spots = spots[spots["selected"] == 1]
        x0, y0 = int(spots["pixel_x"].median()) - 600, int(spots["pixel_y"].median()) - 600
        img = np.asarray(im.crop((x0, y0, x0 + 1200, y0 + 1200)))
    spots = spots.assign(pixel_x=spots["pixel_x"] - x0, pixel_y=spots["pixel_y"] - y0)
    inside = spots["pixel_x"].between(0, 1199) & spots["pixel_y"].between(0, 1199)
    spots = spots[inside].reset_index(drop=True)
    counts = pd.read_csv(her2st_dir / "ST-cnts" / "B4.tsv.gz", sep="\t", index_col=0)
    ids = [f"{x}x{y}" for x, y in zip(spots["x"], spots["y"], strict=True)]
    counts = counts.loc[counts.index.isin(ids)].iloc[:, :300]
    assert len(counts) >= 10
    return img, counts, spots


def _image_levels(element) -> list[np.ndarray]:
    if hasattr(element, "children"):
        return [np.asarray(next(iter(element[k].data_vars.values())).values) for k in sorted(element.children)]
    return [np.asarray(element.values)]


def assert_sdata_equal(a, b) -> None:
    """Everything hist_sd writes is identical after a round trip (arrays compared exactly)."""
    from spatialdata.transformations import get_transformation

    assert set(a.images) == set(b.images)
    for key in a.images:
        la, lb = _image_levels(a.images[key]), _image_levels(b.images[key])
        assert len(la) == len(lb)
        for x, y in zip(la, lb, strict=True):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)
        assert set(get_transformation(a.images[key], get_all=True)) == set(
            get_transformation(b.images[key], get_all=True)
        )
    assert set(a.shapes) == set(b.shapes)
    for key in a.shapes:
        sa, sb = a.shapes[key], b.shapes[key]
        np.testing.assert_array_equal(sa.geometry.x.to_numpy(), sb.geometry.x.to_numpy())
        np.testing.assert_array_equal(sa.geometry.y.to_numpy(), sb.geometry.y.to_numpy())
        np.testing.assert_array_equal(sa["radius"].to_numpy(), sb["radius"].to_numpy())
        assert set(get_transformation(sa, get_all=True)) == set(get_transformation(sb, get_all=True))
    assert set(a.tables) == set(b.tables)
    for key in a.tables:
        ta, tb = a.tables[key], b.tables[key]
        assert sparse.issparse(tb.X) == sparse.issparse(ta.X)
        assert (abs(sparse.csr_matrix(ta.X) - sparse.csr_matrix(tb.X))).nnz == 0
        pd.testing.assert_frame_equal(ta.obs, tb.obs)
        pd.testing.assert_frame_equal(ta.var, tb.var)
        assert set(ta.obsm) == set(tb.obsm)
        for k in ta.obsm:
            np.testing.assert_array_equal(np.asarray(ta.obsm[k]), np.asarray(tb.obsm[k]))
        assert ta.uns["hist_sd"].keys() == tb.uns["hist_sd"].keys()
        for k, v in ta.uns["hist_sd"].items():
            w = tb.uns["hist_sd"][k]
            if isinstance(v, float) and np.isnan(v):
                assert np.isnan(w)
            else:
                assert v == w, k
        assert set(ta.uns.get("spatial", {})) == set(tb.uns.get("spatial", {}))
        for lib, entry in ta.uns.get("spatial", {}).items():
            other = tb.uns["spatial"][lib]
            for k, img in entry["images"].items():
                np.testing.assert_array_equal(img, np.asarray(other["images"][k]))
            assert entry["scalefactors"] == dict(other["scalefactors"])
            assert entry["metadata"] == dict(other["metadata"])
    assert a.attrs.get("hist_sd") == b.attrs.get("hist_sd")


@pytest.fixture(scope="session")
def sdata_equal():
    return assert_sdata_equal


@pytest.fixture(scope="session")
def b4_back(b4, tmp_path_factory):
    """B4 after a write_zarr / read_zarr round trip (the reference for what the in-memory object must match)."""
    import hist_sd as hs

    return hs.io.read_zarr(hs.io.write_zarr(b4, tmp_path_factory.mktemp("b4") / "b4.zarr"))
