from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse

import hist_sd as hs

TRAIN = ("B1", "B2", "D1", "D2")  # patients B and D
HELD_OUT = ("C1", "E1")  # patients C and E


@pytest.fixture(scope="module")
def her2st_sections(data_dir: Path) -> dict[str, AnnData]:
    d = data_dir / "her2st" / "data"
    out = {}
    for s in TRAIN + HELD_OUT:
        sdata = hs.io.read_st(d / "ST-cnts" / f"{s}.tsv.gz", d / "ST-spotfiles" / f"{s}_selection.tsv", None, patient=s[0])
        out[s] = sdata.tables["table"]
    return out


def _synthetic(seed: int, n_side: int = 20) -> AnnData:
    """Counts on a square grid: two smooth spatial genes (one mitochondrial), noise genes, a sparse gene."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n_side, :n_side]
    xy = np.column_stack([xx.ravel(), yy.ravel()]).astype(float) * 100
    smooth = np.exp(-((xx.ravel() - 5) ** 2 + (yy.ravel() - 6) ** 2) / 30.0)
    n = n_side * n_side
    genes = {
        "SPATIAL1": rng.poisson(1 + 30 * smooth),
        "MT-CO1": rng.poisson(1 + 30 * smooth),
        "SPATIAL2": rng.poisson(2 + 20 * (xx.ravel() / n_side)),
        "RARE": (rng.random(n) < 0.02).astype(int),
    }
    for i in range(20):
        genes[f"NOISE{i}"] = rng.poisson(5, n)
    x = np.column_stack(list(genes.values())).astype(np.float32)
    obs = pd.DataFrame({"section": [f"syn{seed}"] * n, "in_tissue": 1}, index=[f"s{i}" for i in range(n)])
    return AnnData(X=sparse.csr_matrix(x), obs=obs, var=pd.DataFrame(index=list(genes)), obsm={"spatial": xy})


def test_synthetic_rule() -> None:
    sections = [_synthetic(0), _synthetic(1), _synthetic(2)]
    before = sections[0].X.copy()
    df = hs.pp.spatial_genes(sections, min_moran=0.3, progress=False)
    assert (sections[0].X != before).nnz == 0  # the caller's X is never normalised in place
    assert list(df.index[df["selected"]]) == ["SPATIAL1", "SPATIAL2"] or set(df.index[df["selected"]]) == {
        "SPATIAL1",
        "SPATIAL2",
    }
    assert "MT-CO1" in df.index and not df.loc["MT-CO1", "selected"]  # excluded by regex
    assert df.loc["MT-CO1", "median_moran"] > 0.3
    assert "RARE" not in df.index  # detected in < 10 % of spots: not a candidate
    assert df["median_moran"].is_monotonic_decreasing
    assert {"median_moran", "min_moran", "n_sections", "selected"} <= set(df.columns)
    assert {f"moran_I_syn{i}" for i in range(3)} <= set(df.columns)
    assert (df.loc[["SPATIAL1", "SPATIAL2"], "n_sections"] == 3).all()
    # written on every table
    for ad in sections:
        assert ad.var["spatial_genes"].sum() == 2 and bool(ad.var.loc["SPATIAL1", "spatial_genes"])
        assert np.isnan(ad.var.loc["RARE", "moran_I"]) and ad.var.loc["SPATIAL1", "moran_I"] > 0.3
        assert ad.var.loc["SPATIAL1", "moran_pval"] < 0.01
        assert list(ad.uns["spatial_genes"]["genes"]) == list(df.index[df["selected"]])
    # Moran's I of a column equals the textbook value on the 15-NN binary weights
    ad = sections[0]
    x = ad.X.toarray()
    expr = np.log1p(x / x.sum(1, keepdims=True) * 1e4)[:, 0]
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=16).fit(ad.obsm["spatial"]).kneighbors(ad.obsm["spatial"])
    w = np.zeros((ad.n_obs, ad.n_obs))
    for i, nb in enumerate(idx):
        w[i, [j for j in nb if j != i][:15]] = 1
    z = expr - expr.mean()
    i_ref = len(z) / w.sum() * (z @ w @ z) / (z @ z)
    assert ad.var.loc["SPATIAL1", "moran_I"] == pytest.approx(i_ref, abs=0.02)


def test_synthetic_options() -> None:
    sections = {"a": _synthetic(0), "b": _synthetic(1)}
    df = hs.pp.spatial_genes(
        sections, min_moran=0.3, n_top=1, always=["NOISE3"], exclude=(), progress=False, key_added="svg"
    )
    sel = list(df.index[df["selected"]])
    assert sel == [df.index[0], "NOISE3"] and df.index[0] in {"SPATIAL1", "SPATIAL2", "MT-CO1"}
    with pytest.raises(KeyError, match="exists already"):
        hs.pp.spatial_genes(sections, progress=False, key_added="svg")
    with pytest.raises(KeyError, match="NOT_A_GENE"):
        hs.pp.spatial_genes(sections, always=["NOT_A_GENE"], progress=False, overwrite=True)
    with pytest.raises(ValueError, match="max_pval"):
        hs.pp.spatial_genes(sections, max_pval=0, progress=False, overwrite=True)
    with pytest.raises(KeyError, match="layer"):
        hs.pp.spatial_genes(sections, layer="nope", progress=False, overwrite=True)
    # normalised data are used as they are (same ranking as on counts)
    normed = {k: v.copy() for k, v in sections.items()}
    for v in normed.values():
        hs.pp.normalize(v)
    df2 = hs.pp.spatial_genes(normed, min_moran=0.3, progress=False, overwrite=True, exclude=())
    np.testing.assert_allclose(df2.loc[df.index, "median_moran"], df["median_moran"], atol=1e-4)


def test_selection_generalises_to_other_patients(her2st_sections: dict[str, AnnData]) -> None:
    """Genes selected on patients B and D keep a significant spatial pattern on patients C and E.

    HiST's threshold (median I > 0.4 with 15 neighbours) was set on Visium; on legacy ST (200 µm spacing,
    a few hundred spots) the median over 30 her2st sections never exceeds 0.37, so 0.3 is used here.
    """
    train = {s: her2st_sections[s].copy() for s in TRAIN}
    df = hs.pp.spatial_genes(train, min_moran=0.3, progress=False)
    sel = list(df.index[df["selected"]])
    assert 5 <= len(sel) <= 60
    assert (df.loc[sel, "median_moran"] > 0.3).all() and (df.loc[sel, "n_sections"] == len(TRAIN)).all()
    assert not any(g.upper().startswith(("MT-", "RPS", "RPL")) for g in sel)
    test = {s: her2st_sections[s].copy() for s in HELD_OUT}
    common = [g for g in sel if all(g in t.var_names for t in test.values())]
    assert len(common) >= 0.8 * len(sel)
    ho = hs.pp.spatial_genes(test, min_moran=-1.0, max_pval=1.0, min_cells=0, progress=False)
    for s, t in test.items():
        i_sel = t.var.loc[common, "moran_I"].to_numpy()
        p_sel = t.var.loc[common, "moran_pval"].to_numpy()
        assert np.nanmedian(i_sel) > 0.1
        assert np.mean(p_sel < 0.01) >= 0.8  # most selected genes are significant in the held-out section
        # ...and far more spatial than the typical candidate gene
        assert np.nanmedian(i_sel) > 3 * max(float(ho[f"moran_I_{s}"].median()), 0.01)


def test_min_sections() -> None:
    sections = {"a": _synthetic(0), "b": _synthetic(1), "c": _synthetic(2)}
    flat = sections["c"]  # SPATIAL1 loses its pattern in one section
    rng = np.random.default_rng(9)
    x = flat.X.toarray()
    x[:, 0] = rng.poisson(x[:, 0].mean(), flat.n_obs)
    flat.X = sparse.csr_matrix(x)
    strict = hs.pp.spatial_genes(sections, min_moran=0.3, progress=False)
    assert strict.loc["SPATIAL1", "n_sections"] == 2 and not strict.loc["SPATIAL1", "selected"]
    relaxed = hs.pp.spatial_genes(sections, min_moran=0.3, min_sections=2, progress=False, overwrite=True)
    assert relaxed.loc["SPATIAL1", "median_moran"] > 0.3 and relaxed.loc["SPATIAL1", "selected"]
    assert relaxed.loc["SPATIAL2", "selected"] and not relaxed.loc["NOISE0", "selected"]
    with pytest.raises(ValueError, match="min_sections"):
        hs.pp.spatial_genes(sections, min_sections=0, progress=False, overwrite=True)
