"""Whole-slide survival verbs on the real TCGA-BLCA cohort: slide-only inference, no leakage, save/load, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hist_sd as hs

#: A small G-HANet (same architecture, narrower) so that a test trains in seconds.
SMALL = {"dim": 64, "dim_head": 16}


@pytest.fixture(scope="module")
def small(blca):
    """120 BLCA patients: 90 of fold 0's training patients and 30 of its test patients, with the fold as splits."""
    train, test = blca.fold(0)
    return blca.subset(list(train[:90]) + list(test[:30]))


@pytest.fixture(scope="module")
def ghanet(small):
    train, _ = small.fold(0)
    return hs.tl.train_survival(small, method="ghanet", cases=train, epochs=2, model_kwargs=SMALL, device="cpu")


def test_ghanet_learns_families_from_training_patients_and_predicts_from_slides_only(small, ghanet) -> None:
    _, test = small.fold(0)
    assert ghanet.inputs == "features"
    assert len(ghanet.families) == 6 and sum(map(len, ghanet.families.values())) > 0
    assert len(ghanet.cuts) == 3 and np.all(np.diff(ghanet.cuts) > 0)
    assert np.isfinite(ghanet.threshold) and len(ghanet.history) == 2
    # a cohort without any genomics: prediction needs only the bags
    slides_only = hs.io.Cohort(small.patients[:, []].copy(), small.instances, splits=small.splits, name="slides")
    assert slides_only.patients.n_vars == 0
    hs.tl.predict_survival(slides_only, ghanet, cases=test, device="cpu")
    risk = slides_only.patients.obs["risk"]
    assert risk.loc[test].notna().all() and risk.drop(test).isna().all()
    np.testing.assert_allclose(risk.loc[test].to_numpy(), ghanet.predict_risk(small.bags(test)), rtol=1e-5)
    groups = slides_only.patients.obs["risk_group"].loc[test]
    assert set(groups) <= {"high", "low"}
    assert slides_only.patients.uns["risk"]["params"]["method"] == "ghanet"


def test_predict_refuses_to_overwrite_and_protects_survival(small, ghanet) -> None:
    c = small.subset(list(small.patients.obs_names))
    hs.tl.predict_survival(c, ghanet, device="cpu")
    with pytest.raises(KeyError, match="exists already"):
        hs.tl.predict_survival(c, ghanet, device="cpu")
    hs.tl.predict_survival(c, ghanet, device="cpu", overwrite=True)
    with pytest.raises(KeyError, match="holds an input"):
        hs.tl.predict_survival(c, ghanet, key_added="event", overwrite=True)


def test_save_load_round_trip(tmp_path, small, ghanet) -> None:
    path = ghanet.save(tmp_path / "ghanet.pt")
    with pytest.raises(FileExistsError):
        ghanet.save(path)
    loaded = hs.tl.load_model(path)
    assert isinstance(loaded, hs.model.SurvivalModel)
    assert loaded.method == "ghanet" and loaded.families == ghanet.families
    np.testing.assert_allclose(loaded.cuts, ghanet.cuts)
    assert loaded.threshold == pytest.approx(ghanet.threshold)
    bags = small.bags()[:10]
    np.testing.assert_allclose(loaded.predict_risk(bags), ghanet.predict_risk(bags), rtol=1e-6)
    with pytest.raises(ValueError, match="feature dimension mismatch"):
        hs.tl.load_model(path, feature_dim=1024)


def test_bad_bags_are_refused(ghanet) -> None:
    with pytest.raises(ValueError, match="no instances"):
        ghanet.predict_risk([np.zeros((0, 192), np.float32)])
    with pytest.raises(ValueError, match="Feature dimension mismatch.*192.*1024"):
        ghanet.predict_risk([np.zeros((5, 1024), np.float32)])


def _altered_test_fold(cohort: hs.io.Cohort, test: np.ndarray, *, genomics: bool) -> hs.io.Cohort:
    """The same cohort with the held-out patients' survival (and genomics) scrambled."""
    c = cohort.subset(list(cohort.patients.obs_names))
    obs = c.patients.obs
    rng = np.random.default_rng(1)
    obs.loc[test, "survival_months"] = rng.uniform(1, 100, len(test))
    obs.loc[test, "event"] = rng.random(len(test)) < 0.5
    obs.loc[test, "censorship"] = (~obs.loc[test, "event"].astype(bool)).astype(int)
    rows = np.flatnonzero(c.patients.obs_names.isin(test))
    if genomics:
        c.patients.X[rows] = rng.normal(size=(len(rows), c.patients.n_vars)).astype(np.float32)
    return c


@pytest.mark.parametrize("method", ["ghanet", "meanpool", "snn"])
def test_reported_fold_labels_cannot_change_its_model(small, method) -> None:
    """Leakage test: scrambling the test fold's survival (and genomics, unless the method reads the genome at test
    time) leaves its predicted risks unchanged."""
    _, test = small.fold(0)
    kw = {"folds": [0], "epochs": 1, "device": "cpu", "model_kwargs": SMALL if method == "ghanet" else None}
    a = hs.tl.cross_validate_survival(small.subset(list(small.patients.obs_names)), methods=[method], **kw)
    altered = _altered_test_fold(small, test, genomics=hs.model.get_method(method).genomics != "input")
    b = hs.tl.cross_validate_survival(altered, methods=[method], **kw)
    np.testing.assert_array_equal(a.risks["risk"].to_numpy(), b.risks["risk"].to_numpy())
    assert a.scores["n_train"].item() == 90 and a.scores["n_test"].item() == 30
    assert a.scores["c_index"].item() != b.scores["c_index"].item()  # the scrambled labels were scored


def test_the_leakage_test_can_fail(small) -> None:
    """Scrambling the *training* patients' survival does change the held-out risks."""
    train, _ = small.fold(0)
    a = hs.tl.cross_validate_survival(small.subset(list(small.patients.obs_names)), methods=["meanpool"], folds=[0])
    b = hs.tl.cross_validate_survival(_altered_test_fold(small, train, genomics=True), methods=["meanpool"], folds=[0])
    assert not np.allclose(a.risks["risk"].to_numpy(), b.risks["risk"].to_numpy())


def test_cross_validation_writes_tidy_results(small) -> None:
    c = small.subset(list(small.patients.obs_names))
    res = hs.tl.cross_validate_survival(c, methods=["meanpool", "coxgenomics"], folds=[0, 1], device="cpu")
    assert list(res.scores.columns[:6]) == ["cohort", "method", "seed", "fold", "c_index", "c_index_uno"]
    assert len(res.scores) == 4 and list(res.summary["method"]) == ["meanpool", "coxgenomics"]
    assert res.scores["c_index"].between(0, 1).all()
    risks = c.patients.obsm["survival_cv"]
    assert list(risks.columns) == ["meanpool", "coxgenomics"]
    test = np.concatenate([c.fold(0)[1], c.fold(1)[1]])
    assert risks.loc[test].notna().all().all() and risks.drop(test).isna().all().all()
    assert set(c.patients.obsm["survival_cv_group"].loc[test, "meanpool"]) <= {"high", "low"}
    assert isinstance(c.patients.uns["survival_cv"]["scores"], pd.DataFrame)
    with pytest.raises(KeyError, match="exists already"):
        hs.tl.cross_validate_survival(c, methods=["meanpool"])


def test_meanpool_reproduces_the_linear_floor_on_a_real_fold(blca) -> None:
    """Patient mean -> PCA-8 -> penalised Cox on BLCA's published fold 0 (deterministic, no epochs)."""
    train, test = blca.fold(0)
    model = hs.tl.train_survival(blca, method="meanpool", cases=train)
    risk = model.predict_risk(blca.bags(test))
    obs = blca.patients.obs.loc[test]
    from hist_sd._core._survival import harrell_c

    c = harrell_c(obs["survival_months"].to_numpy(), obs["event"].to_numpy(), risk)
    assert c == pytest.approx(0.602, abs=0.01)
    assert model.projection.shape == (192, 8)


def test_methods_and_tasks_do_not_mix(small) -> None:
    with pytest.raises(ValueError, match="not a survival method"):
        hs.tl.train_survival(small, method="hist")
    with pytest.raises(ValueError, match="survival"):
        hs.model.get_method("ghanet").check_task(hs.model.get_task("expression"))
    with pytest.raises(ValueError, match="not survival methods"):
        hs.tl.cross_validate_survival(small, methods=["ridge"])
    with pytest.raises(TypeError, match="Cohort"):
        hs.tl.train_survival(small.patients, method="meanpool")
    with pytest.raises(TypeError, match="Unknown training settings"):
        hs.tl.train_survival(small, method="abmil", learning_rate=1e-3)
