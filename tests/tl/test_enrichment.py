"""hs.tl.enrichment: DE + ORA (hypergeometric) and decoupler ULM on a real her2st section (G2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hist_sd as hs
from hist_sd.tl._enrichment import ENRICHMENT_COLUMNS


@pytest.fixture(scope="module")
def g2(data_dir, predict_noisily):
    """G2 with 'predictions' of 1,500 genes (measured + noise) and pathologist tissue labels in obs['label']."""
    table = hs.datasets.her2st(["G2"], data_dir=data_dir, scale_factors=None)["G2"].tables["table"]
    predict_noisily(table, 1500, scale=0.2)
    table.obs["region"] = pd.Categorical(np.where(table.obs["label"] == "invasive cancer", "cancer", "other"))
    return table


def test_enrichment_predicted_beside_measured(g2, data_dir):
    a = g2.copy()
    genes = list(a.uns["hist_pred"]["genes"])
    pred = hs.tl.enrichment(a, groupby="region", data_dir=data_dir)
    meas = hs.tl.enrichment(a, groupby="region", key=None, genes=genes, data_dir=data_dir, key_added="measured")
    assert tuple(pred.columns) == ENRICHMENT_COLUMNS
    assert set(pred["method"]) == {"ora", "ulm"} and set(pred["group"]) == {"cancer", "other"}
    assert (pred["source"] == "hallmarks").all() and pred["padj"].between(0, 1).all()
    assert (pred["padj"] >= pred["pvalue"] - 1e-12).all()
    entry = a.uns["hist_enrichment"]
    assert entry["params"]["key"] == "obsm['hist_pred']" and entry["params"]["source"] == "hallmarks"
    assert entry["n_deg"]["cancer"] > 20
    scores = a.obsm["hist_enrichment_ulm"]
    assert isinstance(scores, pd.DataFrame) and scores.shape[0] == a.n_obs
    assert "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION" in scores.columns
    # G2's invasive cancer is collagen-rich (COL1A1/COL1A2/FN1 higher than in the adipose-rich rest): EMT scores are
    # up in 'cancer', from predicted and from measured expression alike
    for table in (pred, meas):
        ulm = table[table["method"] == "ulm"]
        emt = ulm[(ulm["term"] == "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION") & (ulm["group"] == "cancer")]
        assert emt["padj"].iloc[0] < 0.05 and emt["score"].iloc[0] > 0
    sig = [set(t.loc[(t["padj"] < 0.05) & (t["score"] > 0), ["group", "method", "term"]].itertuples(index=False))
           for t in (pred, meas)]
    assert len(sig[0] & sig[1]) / len(sig[0] | sig[1]) > 0.5


def test_other_sources_and_refusals(g2, data_dir):
    a = g2.copy()
    net = pd.DataFrame({"source": ["S"] * 6, "target": list(a.uns["hist_pred"]["genes"][:6])})
    custom = hs.tl.enrichment(a, groupby="region", source=net, methods="ora", key_added="custom")
    assert set(custom["source"]) == {"custom"} and set(custom["term"]) == {"S"}
    assert "custom_ulm" not in a.obsm
    empty = a.copy()
    empty.obsm["hist_pred"][0] = 0.0  # a spot without expression: decoupler leaves it out, its scores are NaN
    hs.tl.enrichment(empty, groupby="region", data_dir=data_dir, methods="ulm")
    ulm = empty.obsm["hist_enrichment_ulm"]
    assert ulm.iloc[0].isna().all() and ulm.iloc[1:].notna().all().all()
    with pytest.raises(ValueError, match="Unknown gene set"):
        hs.tl.enrichment(a, groupby="region", source="reactome", key_added="x")
    few = a.copy()
    few.obsm["hist_pred"] = few.obsm["hist_pred"][:, :5]
    few.uns["hist_pred"] = {"genes": few.uns["hist_pred"]["genes"][:5]}
    with pytest.raises(ValueError, match="too few genes"):
        hs.tl.enrichment(few, groupby="region", data_dir=data_dir)
    with pytest.raises(KeyError, match="groupby"):
        hs.tl.enrichment(a, groupby="nope", data_dir=data_dir, key_added="x")
    a.obs["one"] = "all"
    with pytest.raises(ValueError, match="at least 2 groups"):
        hs.tl.enrichment(a, groupby="one", data_dir=data_dir, key_added="x")
    with pytest.raises(ValueError, match="methods"):
        hs.tl.enrichment(a, groupby="region", methods=["gsea"], key_added="x")
