from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import hist_sd as hs
from hist_sd._utils import get_image


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
    circles = b4.shapes[meta["shapes_key"]]
    assert np.allclose(circles["radius"], 50 / meta["mpp"])


def test_spots_land_on_tissue(b4):
    t = b4.tables["table"]
    img = np.asarray(get_image(b4, table=t).values).mean(axis=0)
    xy = np.rint(t.obsm["spatial"]).astype(int)
    under = img[xy[:, 1], xy[:, 0]].mean()
    assert under < np.median(img) - 20  # tissue is darker than the mostly white glass
