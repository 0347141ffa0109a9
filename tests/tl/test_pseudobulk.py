"""hs.tl.pseudobulk / hs.tl.evaluate_bulk on real her2st sections (B1, G2), predicted beside measured."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hist_sd as hs
from hist_sd._core._expr import log_normalize, measured_matrix


@pytest.fixture(scope="module")
def sections(data_dir):
    """B1 and G2 (real counts); B1 carries 'predictions' = its measured expression of 1,300 genes + seeded noise."""
    sd = hs.datasets.her2st(["B1", "G2"], data_dir=data_dir, scale_factors=None)
    b1, g2 = sd["B1"].tables["table"], sd["G2"].tables["table"]
    detected = np.asarray((b1.X > 0).sum(axis=0)).ravel()
    genes = [g for g in b1.var_names[np.argsort(-detected, kind="stable")[:1300]] if g in set(g2.var_names)]
    meas, _ = measured_matrix(b1, genes)
    b1.obsm["hist_pred"] = (meas + np.random.default_rng(0).normal(scale=0.5, size=meas.shape)).astype(np.float32)
    b1.uns["hist_pred"] = {"genes": np.asarray(genes)}
    return b1, g2, genes


def test_predicted_and_measured_pseudobulk_side_by_side(sections):
    b1, g2, genes = sections
    pred = hs.tl.pseudobulk(b1)
    meas = hs.tl.pseudobulk(b1, key=None)
    assert pred.shape == (1, len(genes)) and list(pred.var_names) == genes
    assert meas.n_vars == b1.n_vars and meas.obs["n_spots"].iloc[0] == b1.n_obs
    assert pred.uns["pseudobulk"]["params"]["key"] == "obsm['hist_pred']"
    assert meas.uns["pseudobulk"]["params"]["key"] == "measured"
    manual = np.asarray(log_normalize(b1.X).mean(axis=0)).ravel()  # the models' scale: log1p CP10k, mean of spots
    np.testing.assert_allclose(meas.X[0], manual)
    # baseline: a constant profile of another patient's mean expression (what "training mean" predicts)
    other = hs.tl.pseudobulk(g2, key=None, genes=genes).to_df().iloc[0]
    res = hs.tl.evaluate_bulk(pred, meas, baseline=other)
    row = res.iloc[0]
    assert row["sample"] == "B1" and row["n_genes"] == len(genes)
    assert {"pearson", "spearman", "baseline_pearson", "baseline_spearman", "pearson_delta"} <= set(res.columns)
    assert row["baseline_pearson"] > 0.6  # bulk profiles agree mostly through the gene means
    assert row["pearson"] > row["baseline_pearson"] and row["pearson_delta"] > 0.5


def test_groupby_and_several_sections(sections):
    b1, g2, genes = sections
    by_label = hs.tl.pseudobulk(b1, key=None, groupby="label", genes=genes, min_spots=30)
    counts = b1.obs["label"].value_counts()
    assert set(by_label.obs["group"]) == set(counts.index[counts >= 30])
    assert by_label.obs_names[0].startswith("B1:")
    np.testing.assert_array_equal(by_label.obs["n_spots"], counts.loc[by_label.obs["group"]].to_numpy())
    both = hs.tl.pseudobulk({"B1": b1, "G2": g2}, key=None, genes=genes)
    assert list(both.obs_names) == ["B1", "G2"] and both.n_vars == len(genes)
    res = hs.tl.evaluate_bulk(both, pd.DataFrame(both.X, index=both.obs_names, columns=both.var_names))
    np.testing.assert_allclose(res["pearson"], 1.0)
    assert "baseline_pearson" not in res


def test_errors(sections):
    b1, _, genes = sections
    with pytest.raises(KeyError, match="hs.tl.predict"):
        hs.tl.pseudobulk(b1, key="nope")
    with pytest.raises(KeyError, match="not predicted"):
        hs.tl.pseudobulk(b1, genes=["NOT_A_GENE"])
    pred = hs.tl.pseudobulk(b1)
    with pytest.raises(ValueError, match="at least 3"):
        hs.tl.evaluate_bulk(pred[:, :2], pred)
    with pytest.raises(ValueError, match="share no sample"):
        hs.tl.evaluate_bulk(pred, pd.DataFrame(pred.X, index=["other"], columns=pred.var_names))
    with pytest.raises(TypeError, match="baseline"):
        hs.tl.evaluate_bulk(pred, pred, baseline=[1.0, 2.0])
