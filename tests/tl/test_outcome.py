"""``hs.tl.outcome_maps`` / ``train_outcome`` / ``predict_outcome`` / ``cross_validate_outcome`` on slides cut from the
real her2st B4 section (its measured log-expression stands in for the predictions): maps and masks, patient-grouped
folds, clear errors for a clinical table that does not match the slides, a single-class response and no events."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import hist_sd as hs
from hist_sd._core._grid import assign_grid

TINY = {"dims": [4, 8, 8, 8], "depths": [1, 0, 0, 1], "hidden": 4}
N_SLIDES = 14


@pytest.fixture(scope="module")
def slides(data_dir) -> dict[str, AnnData]:
    """14 slides: windows of B4's spots with 6 log-expression genes in ``obsm["hist_pred"]`` and fake features."""
    counts = pd.read_csv(data_dir / "her2st" / "data" / "ST-cnts" / "B4.tsv.gz", sep="\t", index_col=0)
    x = counts.to_numpy(np.float64)
    top = np.argsort(-x.sum(axis=0))[:6]
    vals = np.log1p(x[:, top] / x.sum(axis=1, keepdims=True) * 1e4).astype(np.float32)
    xy = counts.index.str.split("x", expand=True).to_frame().astype(int).to_numpy()
    cols, rows = xy[:, 0], xy[:, 1]
    obs = pd.DataFrame({"array_row": rows, "array_col": cols}, index=counts.index)
    genes = [str(g) for g in counts.columns[top]]
    rng = np.random.default_rng(0)
    out = {}
    for i in range(N_SLIDES):
        r0, c0 = rng.integers(rows.min(), rows.min() + 8), rng.integers(cols.min(), cols.min() + 8)
        keep = (rows >= r0) & (rows < r0 + 14) & (cols >= c0) & (cols < c0 + 16)
        ad = AnnData(obs=obs.loc[keep].copy())
        ad.obs["in_tissue"] = 1
        ad.uns["hist_sd"] = {"technology": "st"}
        ad.obsm["hist_pred"] = vals[keep] + 0.5 * (i % 3)
        ad.uns["hist_pred"] = {"genes": genes}
        ad.obsm["X_hist"] = rng.normal(size=(int(keep.sum()), 12)).astype(np.float32)
        out[f"slide{i:02d}"] = ad
    return out


@pytest.fixture(scope="module")
def clinical() -> pd.DataFrame:
    """Two slides for patients 0-2, one for the others; survival, stage and a response."""
    rng = np.random.default_rng(1)
    case = [f"P{min(i // 2, 3) if i < 6 else i - 3}" for i in range(N_SLIDES)]
    pats = pd.unique(pd.Series(case))
    t = dict(zip(pats, rng.uniform(5, 60, len(pats)).round(1), strict=True))
    e = dict(zip(pats, [1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1][: len(pats)], strict=True))
    return pd.DataFrame({"slide_id": [f"slide{i:02d}" for i in range(N_SLIDES)], "case_id": case,
                         "survival_months": [t[c] for c in case], "event": [e[c] for c in case],
                         "stage": [["I", "II", "III"][int(c[1:]) % 3] for c in case],
                         "response": [["R", "NR"][int(t[c] > 30)] for c in case]})


def test_maps_own_grid_and_fixed(slides, clinical) -> None:
    own = hs.tl.outcome_maps(slides, clinical, shape=None)
    fixed = hs.tl.outcome_maps(slides, clinical)
    assert own.shape is None and fixed.shape == (80, 64) and len(own) == N_SLIDES
    assert own.features.shape == (N_SLIDES, 12) and len(own.genes) == 6
    for name, a, m, f in zip(own.names, own.maps, own.masks, fixed.maps, strict=True):
        ad = slides[name]
        rows, cols, shape, _, _ = assign_grid(ad, pad_multiple=1)
        assert a.shape == (6, *shape) and m.sum() == ad.n_obs
        np.testing.assert_array_equal(a[:, rows, cols].T, ad.obsm["hist_pred"])
        r, c = ad.obs["array_row"].to_numpy(), ad.obs["array_col"].to_numpy()
        np.testing.assert_array_equal(f[:, r, c].T, ad.obsm["hist_pred"])  # HiST's grid: tiles at their indices
        assert (a[:, ~m] == 0).all()
    np.testing.assert_allclose(own.pseudo_bulk(), np.stack([slides[n].obsm["hist_pred"].mean(0) for n in own.names]),
                               rtol=1e-5)
    assert own.obs.loc["slide00", "case_id"] == "P0"


def test_clinical_table_must_match_the_slides(slides, clinical) -> None:
    with pytest.raises(ValueError, match=r"does not match the slides: 2 of 14 slide\(s\) have no row"):
        hs.tl.outcome_maps(slides, clinical.iloc[2:])
    with pytest.raises(ValueError, match="more than once"):
        hs.tl.outcome_maps(slides, pd.concat([clinical, clinical.iloc[:1]]))
    renamed = clinical.assign(slide_id=clinical["slide_id"] + ".svs")
    with pytest.raises(ValueError, match="look like"):
        hs.tl.outcome_maps(slides, renamed)
    with pytest.raises(KeyError, match="no predictions"):
        hs.tl.outcome_maps(slides, clinical, key="other")
    bad = {"a": slides["slide00"].copy()}
    bad["a"].obs["array_row"] += 100
    with pytest.raises(ValueError, match="outside the fixed 80 x 64"):
        hs.tl.outcome_maps(bad)


def test_single_class_response_and_no_events(slides, clinical) -> None:
    one = hs.tl.outcome_maps(slides, clinical.assign(response="R"), shape=None)
    with pytest.raises(ValueError, match="single class"):
        hs.tl.train_outcome(one, task="response", epochs=1)
    with pytest.raises(ValueError, match="single class"):
        hs.tl.cross_validate_outcome(one, task="response", epochs=1)
    none = hs.tl.outcome_maps(slides, clinical.assign(event=0), shape=None)
    with pytest.raises(ValueError, match="no observed event"):
        hs.tl.train_outcome(none, epochs=1)
    with pytest.raises(ValueError, match="no observed event"):
        hs.tl.cross_validate_outcome(none, epochs=1)


def test_folds_group_patients(slides, clinical) -> None:
    from hist_sd.tl._outcome import outcome_folds

    maps = hs.tl.outcome_maps(slides, clinical, shape=None)
    folds = outcome_folds(maps.obs, n_folds=5, seed=3)
    per_patient = folds.groupby(maps.obs["case_id"]).nunique()
    assert (per_patient == 1).all()  # no patient on both sides of any fold
    assert sorted(folds.unique()) == [0, 1, 2, 3, 4]
    split = folds.copy()
    split.loc["slide01"] = (split.loc["slide00"] + 1) % 5  # P0's two slides in two folds
    with pytest.raises(ValueError, match="slides in several folds"):
        hs.tl.cross_validate_outcome(maps, folds=split, epochs=1)
    with pytest.raises(ValueError, match="n_folds"):
        outcome_folds(maps.obs, n_folds=20)


def test_cross_validate_survival_and_response(slides, clinical) -> None:
    maps = hs.tl.outcome_maps(slides, clinical, shape=None)
    cv = hs.tl.cross_validate_outcome(maps, clinical=["stage"], n_folds=3, epochs=2, batch_size=4,
                                      model_kwargs=TINY, device="cpu")
    assert set(cv.summary.index) == {"convnext", "clinical", "image_features", "pseudo_bulk"}
    net = cv.predictions[cv.predictions["method"] == "convnext"]
    assert sorted(net["case_id"]) == sorted(maps.obs["case_id"].unique())  # every patient held out once
    slide_fold = cv.folds.groupby(maps.obs["case_id"]).first()
    assert (net.set_index("case_id")["fold"] == slide_fold.loc[net["case_id"]].to_numpy()).all()
    assert set(net["risk_group"]) <= {"high", "low"}
    assert cv.scores["c_index"].between(0, 1).any()
    km = cv.patients("convnext")
    assert {"risk", "risk_group", "survival_months", "event", "fold"} <= set(km.obs.columns)
    resp = hs.tl.cross_validate_outcome(maps, task="response", n_folds=3, epochs=1, model_kwargs=TINY,
                                        device="cpu", baselines=False)
    assert list(resp.summary.index) == ["convnext"]
    assert {"auc_mean", "balanced_accuracy_mean", "f1_mean", "pooled_auc"} <= set(resp.summary.columns)


def test_train_save_load_predict(slides, clinical, tmp_path) -> None:
    maps = hs.tl.outcome_maps(slides, clinical, shape=None)
    model = hs.tl.train_outcome(maps, clinical=["stage"], epochs=1, model_kwargs=TINY, device="cpu")
    path = model.save(tmp_path / "outcome.pt")
    loaded = hs.tl.load_model(path)
    assert type(loaded).__name__ == "OutcomeModel"
    a = hs.tl.predict_outcome(maps, model, device="cpu")
    b = hs.tl.predict_outcome(maps, str(path), device="cpu")
    pd.testing.assert_frame_equal(a, b)
    # a slide scored alone, or padded in a batch with larger slides, gets the same risk
    alone = hs.tl.predict_outcome(maps, model, slides=["slide05"], device="cpu")
    assert alone.loc["slide05", "risk"] == pytest.approx(a.loc["slide05", "risk"], abs=1e-5)
    pat = hs.tl.predict_outcome(maps, model, by_patient=True, device="cpu")
    assert pat.loc["P0", "risk"] == pytest.approx(a.loc[["slide00", "slide01"], "risk"].mean())
    with pytest.raises(KeyError, match="stage"):
        model.predict(maps, maps.obs.drop(columns=["stage"]))
