from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse, stats

import hist_sd as hs
from hist_sd._core._expr import is_counts as looks_like_counts
from hist_sd._core._expr import measured_matrix
from hist_sd._core._stats import correlate


def _adata(
    meas: np.ndarray, pred: np.ndarray, *, genes: list[str] | None = None, frame: bool = False
) -> ad.AnnData:
    n, g = meas.shape
    genes = genes or [f"g{i}" for i in range(g)]
    a = ad.AnnData(np.asarray(meas, dtype=np.float32))
    a.var_names = genes
    a.obs_names = [f"s{i}" for i in range(n)]
    a.uns["log1p"] = {"base": None}  # the measured values stand for log-normalised expression
    if frame:
        a.obsm["hist_pred"] = pd.DataFrame(pred, index=a.obs_names, columns=genes)
    else:
        a.obsm["hist_pred"] = np.asarray(pred, dtype=np.float32)
        a.uns["hist_pred"] = {"genes": np.asarray(genes)}
    return a


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.mark.parametrize("frame", [False, True])
def test_perfect_and_anticorrelated(rng, frame):
    meas = rng.normal(size=(40, 3)) + 5.0  # not integer: used as it is
    pred = np.column_stack([2 * meas[:, 0] + 1, -meas[:, 1], np.exp(meas[:, 2])])
    df = hs.tl.evaluate(_adata(meas, pred, frame=frame))
    r = df.set_index("gene")
    assert r.loc["g0", "pearson"] == pytest.approx(1.0)
    assert r.loc["g0", "spearman"] == pytest.approx(1.0)
    assert r.loc["g1", "pearson"] == pytest.approx(-1.0)
    assert r.loc["g1", "spearman"] == pytest.approx(-1.0)
    assert r.loc["g2", "spearman"] == pytest.approx(1.0)  # monotone, not linear
    assert 0.5 < r.loc["g2", "pearson"] < 1.0
    assert list(df.columns) == ["gene", "pearson", "spearman", "n_spots"]
    assert (df["n_spots"] == 40).all()
    assert list(df["gene"]) == ["g0", "g2", "g1"]  # sorted by pearson, best first


def test_hand_computed_example():
    meas = np.array([[1.0], [3.0], [2.0], [5.0]]) + 0.5
    pred = np.array([[1.0], [2.0], [3.0], [4.0]])
    df = hs.tl.evaluate(_adata(meas, pred))
    # pearson: sum(dp*dm) = 5.5, sum dp^2 = 5, sum dm^2 = 8.75; spearman ranks (1,3,2,4) vs (1,2,3,4) -> 4/5
    assert df.loc[0, "pearson"] == pytest.approx(5.5 / np.sqrt(5 * 8.75))
    assert df.loc[0, "spearman"] == pytest.approx(0.8)


def test_matches_scipy_with_ties(rng):
    meas = rng.poisson(1.5, size=(60, 8)).astype(float) + 0.25  # many ties
    pred = meas + rng.normal(scale=1.5, size=meas.shape)
    pred[:, 3] = np.round(pred[:, 3])  # ties in the prediction too
    p, s, n = correlate(pred, meas)
    for j in range(meas.shape[1]):
        assert p[j] == pytest.approx(stats.pearsonr(pred[:, j], meas[:, j])[0], abs=1e-12)
        assert s[j] == pytest.approx(stats.spearmanr(pred[:, j], meas[:, j])[0], abs=1e-12)
    assert (n == 60).all()


def test_non_finite_values_are_left_out_per_gene(rng):
    meas = rng.normal(size=(30, 2))
    pred = meas + rng.normal(scale=0.5, size=meas.shape)
    pred[:5, 1] = np.nan
    p, s, n = correlate(pred, meas)
    assert list(n) == [30, 25]
    assert p[1] == pytest.approx(stats.pearsonr(pred[5:, 1], meas[5:, 1])[0])
    assert s[1] == pytest.approx(stats.spearmanr(pred[5:, 1], meas[5:, 1])[0])


def test_constant_genes_give_nan_and_one_warning(rng, caplog):
    meas = rng.normal(size=(20, 4))
    meas[:, 1] = 3.0  # constant measurement
    pred = meas.copy()
    pred[:, 2] = 0.7  # constant prediction
    with caplog.at_level(logging.WARNING, logger="hist_sd"):
        df = hs.tl.evaluate(_adata(meas, pred))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "g1" in warnings[0].getMessage() and "g2" in warnings[0].getMessage()
    r = df.set_index("gene")
    assert np.isnan(r.loc["g1", "pearson"]) and np.isnan(r.loc["g1", "spearman"])
    assert np.isnan(r.loc["g2", "pearson"])
    assert r.loc["g0", "pearson"] == pytest.approx(1.0)
    assert df["pearson"].isna().tolist() == [False, False, True, True]  # NaN last


def test_raw_counts_are_log_normalised(rng):
    counts = rng.poisson(4.0, size=(50, 30)).astype(np.float32)
    ref = ad.AnnData(counts.copy())
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    # the measured table has all 30 genes, the predictions the first 5
    a = ad.AnnData(sparse.csr_matrix(counts), obs=pd.DataFrame(index=[f"s{i}" for i in range(50)]))
    a.var_names = [f"g{i}" for i in range(30)]
    a.layers["counts"] = a.X.copy()
    a.obsm["hist_pred"] = np.asarray(ref.X[:, :5])
    a.uns["hist_pred"] = {"genes": [f"g{i}" for i in range(5)]}
    assert looks_like_counts(a.X)
    df = hs.tl.evaluate(a)
    assert np.allclose(df["pearson"], 1.0) and np.allclose(df["spearman"], 1.0)
    # library size is taken over all genes, not the scored ones
    meas, label = measured_matrix(a, ["g2"])
    assert label == "log1p(CP10k)"
    assert np.allclose(meas[:, 0], np.asarray(ref.X[:, 2]), atol=1e-5)
    # an explicit layer is used as it is
    raw = hs.tl.evaluate(a, layer="counts").set_index("gene")
    exp = stats.pearsonr(np.asarray(ref.X[:, 0]).ravel(), counts[:, 0])[0]
    assert raw.loc["g0", "pearson"] == pytest.approx(exp, abs=1e-6)
    assert (raw["pearson"] < 1.0 - 1e-6).all()


def test_in_tissue_only(rng):
    meas = rng.normal(size=(30, 2))
    pred = meas.copy()
    pred[:10] = rng.normal(size=(10, 2)) * 10  # garbage outside the tissue
    a = _adata(meas, pred)
    a.obs["in_tissue"] = np.r_[np.zeros(10, int), np.ones(20, int)]
    df = hs.tl.evaluate(a)
    assert np.allclose(df["pearson"], 1.0) and (df["n_spots"] == 20).all()
    everything = hs.tl.evaluate(a, in_tissue_only=False)
    assert (everything["pearson"] < 0.99).all() and (everything["n_spots"] == 30).all()
    a.obs["in_tissue"] = 0
    with pytest.raises(ValueError, match="in_tissue"):
        hs.tl.evaluate(a)


def test_gene_selection_and_errors(rng):
    meas = rng.normal(size=(10, 3))
    a = _adata(meas, meas)
    df = hs.tl.evaluate(a, genes="g1")
    assert df["gene"].tolist() == ["g1"]
    with pytest.raises(KeyError, match="NOPE"):
        hs.tl.evaluate(a, genes=["g0", "NOPE"])
    with pytest.raises(KeyError, match="pred_key.*'other'"):
        hs.tl.evaluate(a, pred_key="other")
    with pytest.raises(KeyError, match="layer"):
        hs.tl.evaluate(a, layer="missing")
    del a.uns["hist_pred"]
    with pytest.raises(KeyError, match=r"uns\['hist_pred'\]\['genes'\]"):
        hs.tl.evaluate(a)
    a.uns["hist_pred"] = {"genes": ["g0", "g1"]}
    with pytest.raises(ValueError, match="shape"):
        hs.tl.evaluate(a)


def test_predicted_gene_not_measured_is_skipped(rng, caplog):
    meas = rng.normal(size=(15, 2))
    a = _adata(meas, meas)
    a.obsm["hist_pred"] = np.column_stack([meas, meas[:, 0]])
    a.uns["hist_pred"] = {"genes": ["g0", "g1", "EXTRA"]}
    with caplog.at_level(logging.WARNING, logger="hist_sd"):
        df = hs.tl.evaluate(a)
    assert sorted(df["gene"]) == ["g0", "g1"]
    assert any("not measured" in r.getMessage() for r in caplog.records)
    with pytest.raises(KeyError, match="EXTRA"):
        hs.tl.evaluate(a, genes=["EXTRA"])


def test_key_added_stores_scores(rng, tmp_path):
    meas = rng.normal(size=(25, 3))
    a = _adata(meas, meas + rng.normal(scale=0.3, size=meas.shape))
    df = hs.tl.evaluate(a, key_added="eval")
    entry = a.uns["eval"]
    pd.testing.assert_frame_equal(entry["scores"], df)
    assert entry["params"]["pred_key"] == "hist_pred"
    assert entry["summary"]["mean"] == pytest.approx(df["pearson"].mean())
    with pytest.raises(KeyError, match="eval"):
        hs.tl.evaluate(a, key_added="eval")
    hs.tl.evaluate(a, key_added="eval", genes=["g0"], overwrite=True)
    assert a.uns["eval"]["scores"]["gene"].tolist() == ["g0"]
    a.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert back.uns["eval"]["scores"]["gene"].tolist() == ["g0"]


def test_summarize_scores_known_values():
    df = pd.DataFrame({"pearson": [0.1, 0.2, 0.4, 0.5, np.nan], "fold": ["a", "a", "b", "b", "b"]})
    s = hs.tl.summarize_scores(df)
    assert s["n"] == 4 and s["n_above"] == 2 and s["frac_above"] == 0.5
    assert s["mean"] == pytest.approx(0.3) and s["median"] == pytest.approx(0.3)
    lo, hi = stats.t.interval(0.95, 3, loc=0.3, scale=stats.sem([0.1, 0.2, 0.4, 0.5]))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi))
    by = hs.tl.summarize_scores(df, by="fold", threshold=0.15)
    assert by["fold"].tolist() == ["a", "b"]
    assert by["mean"].tolist() == pytest.approx([0.15, 0.45])
    assert by["n_above"].tolist() == [1, 2]
    # per-fold means: the same summary over another column
    folds = pd.DataFrame({"fold": [0, 1, 2], "mean_pcc": [0.2, 0.3, 0.4]})
    f = hs.tl.summarize_scores(folds, "mean_pcc")
    assert f["column"] == "mean_pcc" and f["mean"] == pytest.approx(0.3) and f["ci_low"] < 0.3 < f["ci_high"]
    one = hs.tl.summarize_scores(pd.DataFrame({"pearson": [0.4]}))
    assert one["mean"] == 0.4 and np.isnan(one["ci_low"])
    with pytest.raises(KeyError, match="spearman2"):
        hs.tl.summarize_scores(df, "spearman2")
    with pytest.raises(KeyError, match="by"):
        hs.tl.summarize_scores(df, by="method")


def test_b4_real_section(b4):
    sd = b4.tables["table"].copy()
    genes = ["ERBB2", "GRB7", "COL1A1", "SCD"]
    meas, label = measured_matrix(sd, genes)
    assert label == "log1p(CP10k)"
    noise = np.random.default_rng(1).normal(scale=0.5, size=meas.shape)
    sd.obsm["hist_pred"] = pd.DataFrame(meas + noise, index=sd.obs_names, columns=genes)
    from spatialdata import SpatialData

    sdata = SpatialData(shapes=dict(b4.shapes), tables={"table": sd})
    df = hs.tl.evaluate(sdata, key_added="hist_eval")
    assert "hist_eval" in sd.uns
    assert set(df["gene"]) == set(genes) and (df["n_spots"] == 283).all()
    for g in genes:
        j = genes.index(g)
        exp = stats.pearsonr(meas[:, j] + noise[:, j], meas[:, j])[0]
        assert df.set_index("gene").loc[g, "pearson"] == pytest.approx(exp, abs=1e-9)
    assert df["pearson"].between(0.3, 1.0).all()
