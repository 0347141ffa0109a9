"""hs.tl.heterogeneity: Leiden sub-clusters of the tumour spots of a real her2st section (G2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

import hist_sd as hs


@pytest.fixture(scope="module")
def g2(data_dir, predict_noisily):
    """G2 (160 pathologist cancer spots in obs['tumor']) with 'predictions' of 800 genes (measured + noise)."""
    table = hs.datasets.her2st(["G2"], data_dir=data_dir, scale_factors=None)["G2"].tables["table"]
    predict_noisily(table, 800, scale=0.2)
    table.obs["tumor"] = table.obs["label"].isin(["invasive cancer", "cancer in situ"]).to_numpy()
    return table


def test_subclusters_from_predicted_and_measured(g2):
    a = g2.copy()
    genes = list(a.uns["hist_pred"]["genes"])
    hs.tl.heterogeneity(a)
    hs.tl.heterogeneity(a, key=None, genes=genes, key_added="subcluster_measured")
    sub = a.obs["hist_subcluster"]
    assert isinstance(sub.dtype, pd.CategoricalDtype) and sub.cat.categories[0] == "0"
    tumour = a.obs["tumor"].to_numpy()
    assert sub[tumour].notna().all() and sub[~tumour].isna().all()
    entry = a.uns["hist_subcluster"]
    assert entry["params"]["key"] == "obsm['hist_pred']" and entry["params"]["resolution"] == 0.4
    assert len(entry["genes"]) == 500 and set(entry["genes"]) <= set(genes)
    assert entry["cluster_sizes"].sum() == tumour.sum() and len(entry["cluster_sizes"]) >= 2
    assert a.uns["subcluster_measured"]["params"]["key"] == "measured"
    ari = adjusted_rand_score(sub[tumour].astype(str), a.obs["subcluster_measured"][tumour].astype(str))
    assert ari > 0.3  # a close prediction gives the measured sub-structure
    # same seed, same clusters; a tumour probability column works as tumor_key
    a.obs["hist_tumor"] = np.where(tumour, 0.9, 0.1)
    hs.tl.heterogeneity(a, tumor_key="hist_tumor", key_added="again")
    np.testing.assert_array_equal(a.obs["again"].astype(str), sub.astype(str))


def test_refusals(g2):
    a = g2.copy()
    with pytest.raises(KeyError, match="hs.tl.tumor_labels"):
        hs.tl.heterogeneity(a, tumor_key="nope")
    a.obs["few"] = np.arange(a.n_obs) < 5
    with pytest.raises(ValueError, match="at least 20"):
        hs.tl.heterogeneity(a, tumor_key="few")
    with pytest.raises(ValueError, match="sub-clustering needs at least 20"):
        hs.tl.heterogeneity(a, genes=list(a.uns["hist_pred"]["genes"][:10]))
    with pytest.raises(ValueError, match="resolution"):
        hs.tl.heterogeneity(a, resolution=0)
    hs.tl.heterogeneity(a, key_added="done")
    with pytest.raises(KeyError, match="exists already"):
        hs.tl.heterogeneity(a, key_added="done")
