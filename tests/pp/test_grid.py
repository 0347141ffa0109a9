from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

import hist_sd as hs


def _light(table: AnnData) -> AnnData:
    """A copy of a shared fixture's table (fixtures must not be modified)."""
    return table.copy()


@pytest.fixture(scope="module")
def mob(data_dir: Path) -> AnnData:
    d = data_dir / "mob_stahl2016"
    sdata = hs.io.read_st(d / "counts" / "Rep1.tsv.gz", d / "spots" / "Rep1.tsv", None)
    return sdata.tables["table"]


def _check_round_trip(ad: AnnData) -> None:
    x = ad.X.toarray() if sparse.issparse(ad.X) else np.asarray(ad.X)
    g, mask = hs.pp.to_grid(ad, "X")
    h, w = (int(v) for v in ad.uns["grid"]["shape"])
    assert g.dtype == torch.float32 and g.shape == (ad.n_vars, h, w)
    assert mask.dtype == torch.bool and mask.shape == (h, w)
    back = hs.pp.from_grid(ad, g)
    assert back.dtype == np.float32 and back.shape == x.shape
    np.testing.assert_array_equal(back, x.astype(np.float32))
    # the mask is True exactly at the in-tissue spots' cells
    inside = ad.obs["in_tissue"].to_numpy() != 0 if "in_tissue" in ad.obs else np.ones(ad.n_obs, bool)
    expect = np.zeros((h, w), bool)
    expect[ad.obs["grid_row"].to_numpy()[inside], ad.obs["grid_col"].to_numpy()[inside]] = True
    np.testing.assert_array_equal(mask.numpy(), expect)
    # cells without a spot are zero
    occupied = np.zeros((h, w), bool)
    occupied[ad.obs["grid_row"], ad.obs["grid_col"]] = True
    assert float(g.numpy()[:, ~occupied].__abs__().sum()) == 0.0


def test_grid_b4_round_trip(b4) -> None:
    ad = _light(b4.tables["table"])
    assert hs.pp.grid(ad) is None
    meta = ad.uns["grid"]
    assert meta["layout"] == "st"
    h, w = (int(v) for v in meta["shape"])
    assert h % 16 == 0 and w % 16 == 0
    assert ad.obs["grid_row"].min() == 0 and ad.obs["grid_col"].min() == 0
    np.testing.assert_array_equal(ad.obs["grid_row"], ad.obs["array_row"] - ad.obs["array_row"].min())
    np.testing.assert_array_equal(ad.obs["grid_col"], ad.obs["array_col"] - ad.obs["array_col"].min())
    _check_round_trip(ad)


@pytest.mark.filterwarnings("ignore:The table is annotating")
def test_grid_on_spatialdata_and_table_key(b4) -> None:
    import spatialdata as sd

    sdata = sd.SpatialData(tables={"table": _light(b4.tables["table"])})
    hs.pp.grid(sdata, table_key="table", pad_multiple=8)
    t = sdata.tables["table"]
    assert all(int(v) % 8 == 0 for v in t.uns["grid"]["shape"])
    with pytest.raises(KeyError, match="table_key"):
        hs.pp.grid(sdata, table_key="nope")


def test_grid_visium_hexagonal_rule(visium: AnnData) -> None:
    ad = visium.copy()
    hs.pp.grid(ad)
    assert ad.uns["grid"]["layout"] == "visium"
    row, acol = ad.obs["array_row"].to_numpy(), ad.obs["array_col"].to_numpy()
    expect_col = np.where(row % 2 == 0, acol // 2, (acol - 1) // 2)
    np.testing.assert_array_equal(ad.obs["grid_col"], expect_col - expect_col.min())
    np.testing.assert_array_equal(ad.obs["grid_row"], row - row.min())
    # the full 78 x 128 Visium array fills a 78 x 64 grid, padded to 80 x 64 (HiST's grid)
    assert [int(v) for v in ad.uns["grid"]["shape"]] == [80, 64]
    _check_round_trip(ad)
    g, mask = hs.pp.to_grid(ad)  # obsm["X_hist"] by default
    assert g.shape[0] == 7 and int(mask.sum()) == 4235
    np.testing.assert_allclose(hs.pp.from_grid(ad, g[None]), ad.obsm["X_hist"].astype(np.float32))


def test_grid_mob_float_coordinates(mob: AnnData) -> None:
    ad = mob.copy()
    hs.pp.grid(ad, layout="auto")
    assert ad.uns["grid"]["layout"] == "st"
    np.testing.assert_array_equal(ad.obs["grid_row"], np.rint(ad.obs["array_y"]) - np.rint(ad.obs["array_y"]).min())
    np.testing.assert_array_equal(ad.obs["grid_col"], np.rint(ad.obs["array_x"]) - np.rint(ad.obs["array_x"]).min())
    _check_round_trip(ad)
    # without the integer columns the float array coordinates are rounded the same way
    ad2 = AnnData(obs=mob.obs.drop(columns=["array_row", "array_col"]).copy())
    hs.pp.grid(ad2, layout="st")
    np.testing.assert_array_equal(ad2.obs["grid_row"], ad.obs["grid_row"])
    np.testing.assert_array_equal(ad2.obs["grid_col"], ad.obs["grid_col"])


def test_features_targets_mask_align(b4) -> None:
    """A spot's features, genes and mask cell are at the same (row, col) (no off-by-one as in HiST's code)."""
    ad = _light(b4.tables["table"])
    rng = np.random.default_rng(3)
    ad.obsm["X_hist"] = rng.normal(size=(ad.n_obs, 5))
    ad.obs["in_tissue"] = rng.integers(0, 2, ad.n_obs)
    hs.pp.grid(ad)
    feats, mask = hs.pp.to_grid(ad, "X_hist")
    genes, mask2 = hs.pp.to_grid(ad, "X")
    assert torch.equal(mask, mask2)
    x = ad.X.toarray()
    for i in rng.choice(ad.n_obs, 25, replace=False):
        r, c = int(ad.obs["grid_row"].iloc[i]), int(ad.obs["grid_col"].iloc[i])
        np.testing.assert_allclose(feats[:, r, c].numpy(), ad.obsm["X_hist"][i].astype(np.float32))
        np.testing.assert_array_equal(genes[:, r, c].numpy(), x[i].astype(np.float32))
        assert bool(mask[r, c]) == bool(ad.obs["in_tissue"].iloc[i])
    # genes keep their var order: a single named gene lands in the right channel
    j = int(np.argmax(np.asarray(x.sum(0)).ravel()))
    r, c = ad.obs["grid_row"].to_numpy(), ad.obs["grid_col"].to_numpy()
    np.testing.assert_array_equal(genes[j].numpy()[r, c], x[:, j].astype(np.float32))


def test_to_grid_layer_and_array(b4) -> None:
    ad = _light(b4.tables["table"])
    ad.layers["counts"] = ad.X.copy() * 2
    hs.pp.grid(ad)
    g, _ = hs.pp.to_grid(ad, layer="counts")
    np.testing.assert_array_equal(hs.pp.from_grid(ad, g), ad.layers["counts"].toarray().astype(np.float32))
    vec = np.arange(ad.n_obs, dtype=float)
    g1, _ = hs.pp.to_grid(ad, vec)
    assert g1.shape[0] == 1
    np.testing.assert_array_equal(hs.pp.from_grid(ad, g1.numpy())[:, 0], vec.astype(np.float32))
    np.testing.assert_array_equal(hs.pp.from_grid(ad, g1[0])[:, 0], vec.astype(np.float32))  # (H, W) accepted


def test_grid_errors(b4) -> None:
    ad = _light(b4.tables["table"])
    with pytest.raises(KeyError, match="hs.pp.grid"):
        hs.pp.to_grid(ad, "X")
    hs.pp.grid(ad)
    with pytest.raises(KeyError, match="exists already"):
        hs.pp.grid(ad)
    hs.pp.grid(ad, overwrite=True, margin=2)
    assert ad.obs["grid_row"].min() == 2
    with pytest.raises(KeyError, match="obsm"):
        hs.pp.to_grid(ad, "X_missing")
    with pytest.raises(ValueError, match=r"\(n_obs, C\)"):
        hs.pp.to_grid(ad, np.zeros((3, 2)))
    h, w = (int(v) for v in ad.uns["grid"]["shape"])
    with pytest.raises(ValueError, match="must be"):
        hs.pp.from_grid(ad, np.zeros((2, h + 1, w)))
    with pytest.raises(ValueError, match="batch size 1"):
        hs.pp.from_grid(ad, np.zeros((2, 3, h, w)))
    with pytest.raises(ValueError, match="layout"):
        hs.pp.grid(ad, layout="hex", overwrite=True)
    with pytest.raises(ValueError, match="pad_multiple"):
        hs.pp.grid(ad, pad_multiple=0, overwrite=True)
    bare = AnnData(obs=pd.DataFrame({"array_row": [0, 1], "array_col": [0, 0]}, index=["a", "b"]))
    with pytest.raises(ValueError, match="layout="):
        hs.pp.grid(bare)  # no technology recorded
    dup = AnnData(obs=pd.DataFrame({"array_row": [0, 0, 1], "array_col": [1, 1, 0]}, index=["a", "b", "c"]))
    with pytest.raises(ValueError, match="share a grid cell"):
        hs.pp.grid(dup, layout="tiles")
    # Visium columns 2k and 2k+1 on an even row collapse to one cell: a clear error, not silent loss
    hexdup = AnnData(obs=pd.DataFrame({"array_row": [0, 0], "array_col": [2, 3]}, index=["a", "b"]))
    with pytest.raises(ValueError, match="share a grid cell"):
        hs.pp.grid(hexdup, layout="visium")


@st.composite
def _random_table(draw: st.DrawFn) -> tuple[AnnData, str]:
    layout = draw(st.sampled_from(["st", "tiles", "visium"]))
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_rows, n_cols = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    cells = rng.choice(n_rows * n_cols, size=min(n, n_rows * n_cols), replace=False)
    row, col = cells // n_cols, cells % n_cols
    off_r, off_c = draw(st.integers(-5, 30)), draw(st.integers(-5, 30))
    row = row + off_r
    if layout == "visium":  # Visium array columns: even on even rows, odd on odd rows
        col = 2 * (col + off_c) + (row % 2)
    else:
        col = col + off_c
    obs = pd.DataFrame(
        {"array_row": row, "array_col": col, "in_tissue": rng.integers(0, 2, len(row))},
        index=[f"s{i}" for i in range(len(row))],
    )
    c = draw(st.integers(1, 4))
    ad = AnnData(X=rng.normal(size=(len(row), c)).astype(np.float32), obs=obs)
    ad.obsm["X_hist"] = rng.normal(size=(len(row), 3))
    return ad, layout


@settings(max_examples=60, deadline=None)
@given(case=_random_table(), pad=st.integers(1, 16), margin=st.integers(0, 3))
def test_round_trip_property(case: tuple[AnnData, str], pad: int, margin: int) -> None:
    ad, layout = case
    hs.pp.grid(ad, layout=layout, pad_multiple=pad, margin=margin)
    h, w = (int(v) for v in ad.uns["grid"]["shape"])
    assert h % pad == 0 and w % pad == 0
    assert ad.obs["grid_row"].min() == margin and ad.obs["grid_col"].min() == margin
    assert ad.obs["grid_row"].max() + margin < h and ad.obs["grid_col"].max() + margin < w
    assert h - pad < ad.obs["grid_row"].max() + 1 + margin <= h
    _check_round_trip(ad)
    g, _ = hs.pp.to_grid(ad, "X_hist")
    np.testing.assert_array_equal(hs.pp.from_grid(ad, g), ad.obsm["X_hist"].astype(np.float32))
