from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import hist_sd as hs
from hist_sd._core._image import get_image


def test_read_st_b4_structure(b4):
    t = b4.tables["table"]
    assert t.n_obs == 283
    assert t.n_vars > 15000
    assert sparse.issparse(t.X)
    assert float(t.X.sum()) > 0 and np.allclose(t.X.data, np.round(t.X.data))
    assert {"array_row", "array_col", "in_tissue", "section", "patient"} <= set(t.obs.columns)
    assert (t.obs["section"] == "B4").all() and (t.obs["patient"] == "B").all()
    meta = t.uns["hist_sd"]
    assert meta["mpp"] == pytest.approx(0.69, abs=0.02)
    img = get_image(b4, table=t)
    assert img.dims == ("c", "y", "x") and img.dtype == np.uint8 and img.shape[0] == 3
    pyramid = b4.images[meta["image_key"]]
    assert sorted(pyramid.children) == ["scale0", "scale1", "scale2", "scale3"]  # default scale_factors (2, 2, 2)
    assert next(iter(pyramid["scale3"].data_vars.values())).shape == (3, img.shape[1] // 8, img.shape[2] // 8)
    circles = b4.shapes[meta["shapes_key"]]
    assert np.allclose(circles["radius"], 50 / meta["mpp"])


def test_spots_land_on_tissue(b4):
    t = b4.tables["table"]
    img = get_image(b4, table=t)
    xy = np.rint(t.obsm["spatial"]).astype(int)
    under = np.asarray(img.values[:, xy[:, 1], xy[:, 0]], dtype=float).mean()
    median = np.median(np.asarray(img[:, ::8, ::8].values, dtype=float).mean(axis=0))
    assert under < median - 20  # tissue is darker than the mostly white glass


def test_read_st_crop_matches_counts(b4_crop):
    img, counts, spots = b4_crop
    sd = hs.io.read_st(counts, spots, img, section="c", scale_factors=None)
    t = sd.tables["table"]
    assert t.n_obs == len(counts) and t.n_vars == 300
    np.testing.assert_array_equal(t.X.toarray(), counts.loc[t.obs_names].to_numpy())
    assert (t.obs["patient"] == "c").all()


def test_read_st_bad_input(b4_crop, her2st_dir, tmp_path):
    img, counts, spots = b4_crop
    with pytest.raises(FileNotFoundError, match="`counts`"):
        hs.io.read_st(tmp_path / "missing.tsv.gz", spots)
    with pytest.raises(FileNotFoundError, match="`spots`"):
        hs.io.read_st(counts, tmp_path / "missing.tsv")
    with pytest.raises(FileNotFoundError, match="`image`"):
        hs.io.read_st(counts, spots, tmp_path / "missing.jpg")
    shifted = spots.assign(x=spots["x"] + 100, y=spots["y"] + 100)
    with pytest.raises(ValueError, match="no spot in common"):
        hs.io.read_st(counts, shifted)
    with pytest.raises(ValueError, match="outside the image"):
        hs.io.read_st(counts, spots, img[:300, :300])
    with pytest.raises(ValueError, match="outside the image"):
        hs.io.read_st(counts, spots, img, scale=3.0)
    from PIL import Image

    gray = tmp_path / "gray.png"
    Image.fromarray(img[..., 1]).save(gray)
    with pytest.raises(ValueError, match="mode 'L'"):
        hs.io.read_st(counts, spots, gray)
    with pytest.raises(ValueError, match="pixel_x"):
        hs.io.read_st(counts, spots.drop(columns=["pixel_x"]))


def test_read_st_float_ids(data_dir):
    """The mouse olfactory bulb layout: spot file indexed by "XxY" float ids, no `selected` column."""
    d = data_dir / "mob_stahl2016"
    sd = hs.io.read_st(d / "counts" / "Rep11.tsv.gz", d / "spots" / "Rep11.tsv", section="Rep11")
    t = sd.tables["table"]
    assert t.n_obs == 262 and t.obs_names[0] == "16.92x9.015"
    assert t.obs["array_x"].iloc[0] == pytest.approx(16.92) and t.obs["array_col"].iloc[0] == 17
    assert t.uns["hist_sd"]["mpp"] == pytest.approx(2.75, abs=0.02)
    assert (t.obs["in_tissue"] == 1).all()
