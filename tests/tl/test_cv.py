from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import hist_sd as hs

KW = {"preset": "tiny", "model_kwargs": {"base_width": 8}, "epochs": 30, "lr": 1e-2}


def _perturbed(ad):
    ad = ad.copy()
    x = ad.X.toarray()
    ad.X = type(ad.X)(x[::-1] * 3 + 1)  # different expression, same spots and features
    return ad


def test_cross_validate_tidy_output(sections, genes):
    res = hs.tl.cross_validate(sections, genes=genes, train_kwargs=KW, progress=False)
    assert isinstance(res, hs.tl.CVResult) and res.models == {}  # one return type whatever the flags
    scores, summary = res.scores, res.summary
    assert list(scores.columns[:5]) == ["method", "fold", "section", "gene", "pearson"]
    assert set(scores["fold"]) == {"A", "B", "C"}
    assert set(scores["section"]) == set(sections)
    assert len(scores) == len(sections) * len(genes)
    row = summary.iloc[0]
    assert row["ci95_low"] <= row["mean_pearson"] <= row["ci95_high"]
    per_section = scores.groupby("section")["pearson"].mean()
    assert row["mean_pearson"] == pytest.approx(per_section.mean())
    assert row["n_sections"] == 4
    # over-smoothing beside the PCC: Moran's I of predicted vs measured genes, PCs for 90% of the variance
    assert {"moran_pred", "moran_true", "n_pc90_pred", "n_pc90_true"} <= set(scores.columns)
    assert row["median_moran_pred"] == pytest.approx(scores["moran_pred"].median())
    assert 1 <= row["n_pc90_pred"] <= len(genes) and 1 <= row["n_pc90_true"] <= len(genes)


def test_leave_one_section_out(sections, genes):
    res = hs.tl.cross_validate(sections, groups="section", method="ridge", genes=genes, progress=False)
    scores = res.scores
    assert set(scores["fold"]) == set(sections)
    assert scores.groupby("section")["pearson"].mean().min() > 0.7  # linear truth


def test_held_out_expression_cannot_influence_its_fold(sections, genes):
    """Leak test: changing the held-out patient's expression leaves its fold's model and predictions unchanged."""
    m1 = hs.tl.cross_validate(sections, genes=genes, train_kwargs=KW, progress=False, return_models=True).models
    leaked = dict(sections, C1=_perturbed(sections["C1"]))
    m2 = hs.tl.cross_validate(leaked, genes=genes, train_kwargs=KW, progress=False, return_models=True).models
    for a, b in zip(m1["C"].net.state_dict().values(), m2["C"].net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(m1["C"].target_mean, m2["C"].target_mean)
    # ... while the same change to a training section does change that fold's model (the test can fail)
    changed = dict(sections, B1=_perturbed(sections["B1"]))
    m3 = hs.tl.cross_validate(changed, genes=genes, train_kwargs=KW, progress=False, return_models=True).models
    assert not np.array_equal(m1["C"].target_mean, m3["C"].target_mean)


def test_gene_selection_never_sees_the_held_out_group(sections, genes, section_maker, monkeypatch):
    seen: list[set[str]] = []

    def spy(datas, **kwargs):
        seen.append({str(t.obs["section"].iloc[0]) for t in datas.values()})
        return pd.DataFrame({"selected": True}, index=genes[: kwargs["n_top"]])

    monkeypatch.setattr(hs.pp, "spatial_genes", spy, raising=False)
    extra = {"A9": section_maker("A9", "A", seed=9), "C9": section_maker("C9", "C", seed=10)}
    res = hs.tl.cross_validate(sections, genes=3, gene_sections=extra, method="ridge", progress=False)
    scores = res.scores
    assert seen == [{"B1", "C1", "C9"},  # fold A: no A section, not the extra A9
                    {"A1", "A2", "C1", "A9", "C9"},  # fold B
                    {"A1", "A2", "B1", "A9"}]  # fold C
    assert scores["gene"].nunique() == 3


def test_cross_validate_errors(sections, genes):
    one = {k: v for k, v in sections.items() if k.startswith("A")}
    with pytest.raises(ValueError, match="two groups"):
        hs.tl.cross_validate(one, genes=genes, progress=False)
    with pytest.raises(KeyError, match="donor"):
        hs.tl.cross_validate(sections, groups="donor", genes=genes, progress=False)
    with pytest.raises(ValueError, match="method"):
        hs.tl.cross_validate(sections, method="svm", genes=genes, progress=False)


def test_cross_validate_tumour_segmentation(sections):
    for ad in sections.values():
        ad.obs["tumor"] = ad.obsm["X_hist"][:, 0] > 0.2
    res = hs.tl.cross_validate(sections, task="tumor", method="mlp", train_kwargs={"epochs": 30},
                                           progress=False)
    scores, summary = res.scores, res.summary
    assert set(scores["section"]) == set(sections)
    assert {"auc", "iou", "dice", "sensitivity", "precision", "f1", "specificity", "accuracy"} <= set(scores.columns)
    assert summary.loc[0, "mean_auc"] > 0.8
    assert summary.loc[0, "mean_auc"] == pytest.approx(scores["auc"].mean())


def test_cross_validate_per_fold_gene_lists(sections, genes):
    per_fold = {"A": genes, "B": genes[:3], "C": genes[2:]}
    res = hs.tl.cross_validate(sections, method="ridge", genes=per_fold, progress=False)
    scores = res.scores
    for fold, g in per_fold.items():
        assert sorted(scores.loc[scores["fold"] == fold, "gene"].unique()) == sorted(g)
    with pytest.raises(KeyError, match="fold 'C'"):
        hs.tl.cross_validate(sections, method="ridge", genes={"A": genes, "B": genes}, progress=False)
