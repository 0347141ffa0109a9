"""hs.tl.cnv: infercnvpy on predicted and on measured expression of a real her2st section (B1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hist_sd as hs

CANCER = ["invasive cancer", "cancer in situ"]


@pytest.fixture(scope="module")
def b1(data_dir, predict_noisily):
    """B1 with 'predictions' of 1,300 genes (measured + seeded noise) and pathologist tumour calls in obs['tumor']."""
    table = hs.datasets.her2st(["B1"], data_dir=data_dir, scale_factors=None)["B1"].tables["table"]
    predict_noisily(table, 1300, scale=0.3)
    table.obs["tumor"] = table.obs["label"].isin(CANCER).to_numpy()
    return table


@pytest.fixture(scope="module")
def positions(data_dir):
    return hs.datasets.gene_positions(data_dir=data_dir)


def test_cnv_on_predictions_beside_measured(b1, positions):
    a = b1.copy()
    genes = list(a.uns["hist_pred"]["genes"])
    hs.tl.cnv(a, gene_positions=positions)  # reference: the spots that are not obs["tumor"]
    hs.tl.cnv(a, key=None, genes=genes, key_added="cnv_measured", gene_positions=positions)
    x = a.obsm["X_cnv"]
    assert x.shape[0] == a.n_obs and x.shape[1] > 20 and np.isfinite(x).all()
    chr_pos = a.uns["cnv"]["chr_pos"]
    assert "chr1" in chr_pos and all(0 <= v < x.shape[1] for v in chr_pos.values())
    params = a.uns["cnv"]["params"]
    assert params["key"] == "obsm['hist_pred']" and params["reference"] == "not obs['tumor']"
    assert a.uns["cnv"]["n_reference"] == int((~a.obs["tumor"]).sum())
    assert a.uns["cnv"]["n_genes_positioned"] >= 1000
    assert a.uns["cnv_measured"]["params"]["key"] == "measured"
    np.testing.assert_array_equal(a.obs["cnv_reference"], ~a.obs["tumor"].to_numpy())
    score = a.obs["cnv_score"].to_numpy()
    tumour_profile = x[~a.obs['cnv_reference'].to_numpy()].mean(0) - x[a.obs['cnv_reference'].to_numpy()].mean(0)
    np.testing.assert_allclose(score[:3], [np.corrcoef(x[i], tumour_profile)[0, 1] for i in range(3)])
    arms = a.obsm["cnv_arms"]
    assert isinstance(arms, pd.DataFrame) and {"chr1p", "chr1q", "chr17q"} <= set(arms.columns)
    assert list(arms.columns[:2]) == ["chr1p", "chr1q"]
    # the noisy prediction keeps the measured copy-number picture
    assert np.corrcoef(score, a.obs["cnv_measured_score"])[0, 1] > 0.5
    # tumour spots deviate more from the (non-tumour) reference than the reference itself
    assert score[a.obs["tumor"].to_numpy()].mean() > score[~a.obs["tumor"].to_numpy()].mean()
    import infercnvpy as icnv

    icnv.tl.pca(a, use_rep="cnv", n_comps=5)  # infercnvpy finds its own keys
    assert a.obsm["X_cnv_pca"].shape == (a.n_obs, 5)


def test_given_reference_and_refusals(b1, positions):
    a = b1.copy()
    hs.tl.cnv(a, reference_key="label", reference=["adipose tissue", "connective tissue"], key_added="cnv_ref",
              gene_positions=positions)
    assert a.uns["cnv_ref"]["params"]["reference"] == "given"
    assert a.obs["cnv_ref_reference"].sum() == a.obs["label"].isin(["adipose tissue", "connective tissue"]).sum()
    with pytest.raises(KeyError, match="exists already"):
        hs.tl.cnv(a, reference_key="label", reference=["adipose tissue"], key_added="cnv_ref")
    few = a.copy()
    few.obsm["hist_pred"] = few.obsm["hist_pred"][:, :300]
    few.uns["hist_pred"] = {"genes": few.uns["hist_pred"]["genes"][:300]}
    with pytest.raises(ValueError, match="at least 1000 are needed"):
        hs.tl.cnv(few, gene_positions=positions)
    none = a.copy()
    del none.obs["tumor"]
    with pytest.raises(ValueError, match="No reference spots"):
        hs.tl.cnv(none, gene_positions=positions)
    with pytest.raises(ValueError, match="No reference spots"):
        hs.tl.cnv(none, reference=np.zeros(none.n_obs, dtype=bool), gene_positions=positions)
    with pytest.raises(ValueError, match="No usable reference"):
        hs.tl.cnv(none, reference=list(none.obs_names[:3]), gene_positions=positions)
    with pytest.raises(ValueError, match="window_size"):
        hs.tl.cnv(a, window_size=1, key_added="other")
