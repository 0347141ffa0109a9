"""Training engine of the outcome module: the Cox head against lifelines (real TCGA-BLCA, tied times), encodings,
standardisation and the errors for a cohort with no events and a single-class response."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hist_sd._core._survival import harrell_c
from hist_sd.model._outcome import encode_clinical, pad_maps
from hist_sd.train._outcome import clinical_spec, cox_baseline, fit_cox_head, fit_outcome, gene_stats

COLS = ["age", "TP53_rnaseq", "EGFR_rnaseq", "ERBB2_rnaseq"]


@pytest.fixture(scope="module")
def blca(data_dir: Path) -> pd.DataFrame:
    """TCGA-BLCA patients (one row per case; tied survival times)."""
    df = pd.read_csv(data_dir / "tcga" / "porpoise_mutsig" / "tcga_blca_all_clean.csv.zip")
    df = df.drop_duplicates("case_id").dropna(subset=COLS).reset_index(drop=True)
    df["event"] = 1 - df["censorship"]
    assert df.loc[df["event"] == 1, "survival_months"].duplicated().any()  # tied event times: Efron matters
    return df


@pytest.mark.parametrize("penalizer", [0.0, 0.1])
def test_cox_head_equals_lifelines_with_ties(blca: pd.DataFrame, penalizer: float) -> None:
    from lifelines import CoxPHFitter

    x = blca[COLS].to_numpy(float)
    t, e = blca["survival_months"].to_numpy(float), blca["event"].to_numpy(bool)
    head, mu, sd = fit_cox_head(x, t, e, penalizer=penalizer)
    z = (x - mu) / sd
    df = pd.DataFrame(z, columns=COLS).assign(time=t, event=e.astype(int))
    cph = CoxPHFitter(penalizer=penalizer).fit(df, "time", "event")
    w = head.layers[0].weight.detach().numpy().ravel()
    np.testing.assert_allclose(w, cph.params_[COLS].to_numpy(), atol=2e-3)
    with torch.no_grad():
        risk = head(torch.from_numpy(z))["logits"][:, 0].numpy()
    assert harrell_c(t, e, risk) == pytest.approx(harrell_c(t, e, z @ cph.params_[COLS].to_numpy()), abs=1e-3)


def test_cox_baseline_and_head_errors(blca: pd.DataFrame) -> None:
    x = blca[COLS].to_numpy(float)
    t = blca["survival_months"].to_numpy(float)
    r_tr, r_te = cox_baseline(x[:200], t[:200], blca["event"].to_numpy()[:200], x[200:], n_components=2)
    assert r_tr.shape == (200,) and r_te.shape == (len(x) - 200,)
    with pytest.raises(ValueError, match="No observed event"):
        fit_cox_head(x, t, np.zeros(len(t), bool))


def _toy(n: int = 6) -> tuple[list[np.ndarray], list[np.ndarray], pd.DataFrame]:
    rng = np.random.default_rng(0)
    maps = [rng.normal(size=(3, 9, 7)).astype(np.float32) for _ in range(n)]
    masks = [rng.random((9, 7)) > 0.3 for _ in range(n)]
    obs = pd.DataFrame({"stage": ["I", "II", "I", "III", "II", "I"][:n], "age": np.arange(n) * 7.0 + 40},
                       index=[f"s{i}" for i in range(n)])
    return maps, masks, obs


def test_fit_outcome_errors() -> None:
    maps, masks, obs = _toy()
    with pytest.raises(ValueError, match="no observed event"):
        fit_outcome(maps, masks, obs, genes=list("abc"), time=np.arange(6.0), event=np.zeros(6), epochs=1)
    with pytest.raises(ValueError, match="single class"):
        fit_outcome(maps, masks, obs, genes=list("abc"), task="response", labels=np.array(["R"] * 6), epochs=1)
    with pytest.raises(ValueError, match="Unknown training setting"):
        fit_outcome(maps, masks, obs, genes=list("abc"), time=np.arange(6.0), event=np.ones(6), momentum=0.9)
    with pytest.raises(KeyError, match="grade"):
        fit_outcome(maps, masks, obs, genes=list("abc"), time=np.arange(6.0), event=np.ones(6), clinical=["grade"])


def test_fit_outcome_survival_and_response() -> None:
    maps, masks, obs = _toy()
    small = {"dims": [4, 8, 8, 8], "depths": [1, 0, 0, 1], "hidden": 4}
    model = fit_outcome(maps, masks, obs, genes=list("abc"), time=np.arange(1.0, 7.0), event=np.ones(6),
                        clinical=["stage"], epochs=2, batch_size=3, model_kwargs=small, device="cpu")
    assert len(model.history) == 2 and np.isfinite(model.history).all()
    assert np.isfinite(model.threshold) and model.clinical["stage"]["levels"] == ["I", "II", "III"]
    resp = fit_outcome(maps, masks, obs, genes=list("abc"), task="response", labels=np.array(list("RNRNRR")),
                       epochs=1, model_kwargs=small, device="cpu")
    assert resp.classes == ["N", "R"]


def test_encodings_and_gene_stats() -> None:
    maps, masks, obs = _toy()
    spec = clinical_spec(obs, ["stage"])
    assert spec == {"stage": {"kind": "onehot", "levels": ["I", "II", "III"]}}
    new = pd.DataFrame({"stage": ["II", "IV", None]})
    np.testing.assert_array_equal(encode_clinical(new, spec), [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
    many = pd.DataFrame({"age": np.arange(20.0)})
    num = clinical_spec(many, ["age"])["age"]
    assert num["kind"] == "numeric" and num["mean"] == pytest.approx(9.5)
    mean, sd = gene_stats(maps, masks)
    vals = np.concatenate([a[:, m] for a, m in zip(maps, masks, strict=True)], axis=1)
    np.testing.assert_allclose(mean, vals.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(sd, vals.std(axis=1), rtol=1e-4)
    x, m = pad_maps(maps[:2], masks[:2], mean, sd)
    assert x.shape == (2, 3, 9, 7) and (x[~np.broadcast_to(m[:, None], x.shape)] == 0).all()
