"""Survival metrics and checks of hist_sd._core._survival, against hand computations and scikit-survival."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hist_sd._core._survival import (
    check_survival,
    discretize,
    harrell_c,
    logrank_p,
    risk_from_hazard_logits,
    risk_groups,
    time_bins,
    uno_c,
)

GENES = ["TP53_rnaseq", "EGFR_rnaseq", "ERBB2_rnaseq"]


@pytest.fixture(scope="module")
def blca(data_dir: Path) -> pd.DataFrame:
    """TCGA-BLCA patients (one row per case) with ``event`` and a fixed linear risk of age + 3 genes."""
    df = pd.read_csv(data_dir / "tcga" / "porpoise_mutsig" / "tcga_blca_all_clean.csv.zip")
    df = df.drop_duplicates("case_id").reset_index(drop=True)
    df["event"] = 1 - df["censorship"]
    df["risk"] = 0.03 * df["age"] + df[GENES].to_numpy(float) @ np.array([0.2, 0.1, -0.15])
    return df


@pytest.fixture(scope="module")
def split(data_dir: Path, blca: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    s = pd.read_csv(data_dir / "tcga" / "splits" / "porpoise" / "5foldcv" / "tcga_blca" / "splits_0.csv")
    train = blca[blca["case_id"].isin(s["train"].dropna())]
    val = blca[blca["case_id"].isin(s["val"].dropna())]
    assert len(train) > 250 and len(val) > 60
    return train, val


def _y(d: pd.DataFrame) -> np.ndarray:
    return np.array(
        list(zip(d["event"].astype(bool), d["survival_months"], strict=True)),
        dtype=[("event", bool), ("time", float)],
    )


# --- check_survival ----------------------------------------------------------------------------------


def test_check_survival_types() -> None:
    t, e = check_survival([1, 2.5, 0], [1, 0, 1])
    assert t.dtype == np.float64 and e.dtype == bool
    assert e.tolist() == [True, False, True]
    _, e2 = check_survival(np.array([1.0, 2.0]), np.array([True, False]), n=2)
    assert e2.tolist() == [True, False]


@pytest.mark.parametrize(
    ("time", "event", "match"),
    [
        ([1.0, 2.0], [1], "same length"),
        ([1.0, np.nan], [1, 0], "`time` has 1 NaN"),
        ([1.0, -2.0], [1, 0], r"`time` must be >= 0"),
        ([1.0, np.inf], [1, 0], "`time` must be finite"),
        ([1.0, 2.0], [1, 2], "`event` must be binary"),
        ([1.0, 2.0], [1, np.nan], "`event` must be binary"),
    ],
)
def test_check_survival_errors(time, event, match) -> None:
    with pytest.raises(ValueError, match=match):
        check_survival(time, event)


def test_check_survival_n() -> None:
    with pytest.raises(ValueError, match="must have 3 entries"):
        check_survival([1.0, 2.0], [1, 0], n=3)


# --- bins --------------------------------------------------------------------------------------------


def test_time_bins_use_only_events(blca: pd.DataFrame) -> None:
    t, e = blca["survival_months"].to_numpy(), blca["event"].to_numpy()
    cuts = time_bins(t, e, n_bins=4)
    assert cuts.shape == (3,)
    np.testing.assert_allclose(cuts, np.quantile(t[e == 1], [0.25, 0.5, 0.75]))
    # censored patients never move the cuts
    t2 = t.copy()
    t2[e == 0] = 1e4
    np.testing.assert_array_equal(time_bins(t2, e, n_bins=4), cuts)
    labels = discretize(t, cuts)
    assert labels.dtype == np.int64 and set(labels) == {0, 1, 2, 3}
    # about a quarter of the events per bin
    counts = np.bincount(labels[e == 1], minlength=4)
    assert counts.min() >= len(t[e == 1]) // 4 - 3


def test_discretize_boundaries() -> None:
    cuts = np.array([2.0, 5.0])
    assert discretize([0.0, 1.9, 2.0, 4.9, 5.0, 100.0], cuts).tolist() == [0, 0, 1, 1, 2, 2]


def test_time_bins_errors() -> None:
    with pytest.raises(ValueError, match="at least `n_bins`=4 observed events"):
        time_bins([1.0, 2.0, 3.0, 4.0, 5.0], [1, 1, 1, 0, 0], n_bins=4)
    with pytest.raises(ValueError, match="`n_bins` must be an integer >= 2"):
        time_bins([1.0, 2.0], [1, 1], n_bins=1)
    with pytest.raises(ValueError, match="`cuts`"):
        discretize([1.0], [3.0, 2.0])


# --- Harrell ----------------------------------------------------------------------------------------


def test_harrell_hand() -> None:
    t, e = [1.0, 2.0, 3.0, 4.0], [1, 0, 1, 1]
    # comparable: (0,1) (0,2) (0,3) concordant; (2,3) discordant
    assert harrell_c(t, e, [4.0, 3.0, 1.0, 2.0]) == pytest.approx(0.75)
    # a tie in risk counts one half
    assert harrell_c(t, e, [4.0, 3.0, 2.0, 2.0]) == pytest.approx(3.5 / 4)
    # perfect and reversed orderings
    assert harrell_c(t, e, [4.0, 3.0, 2.0, 1.0]) == pytest.approx(1.0)
    assert harrell_c(t, e, [1.0, 2.0, 3.0, 4.0]) == pytest.approx(0.0)


def test_harrell_errors() -> None:
    with pytest.raises(ValueError, match="No comparable pair"):
        harrell_c([1.0, 2.0, 3.0], [0, 0, 0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="`risk` must be finite"):
        harrell_c([1.0, 2.0], [1, 1], [np.nan, 1.0])
    with pytest.raises(ValueError, match="one score per patient"):
        harrell_c([1.0, 2.0], [1, 1], [1.0])


def test_harrell_matches_sksurv_on_tcga(blca: pd.DataFrame) -> None:
    from sksurv.metrics import concordance_index_censored

    d = blca.drop_duplicates("survival_months", keep=False)  # no tied times: the libraries agree exactly
    assert len(d) > 250
    ours = harrell_c(d["survival_months"], d["event"], d["risk"])
    ref = concordance_index_censored(d["event"].astype(bool).to_numpy(), d["survival_months"], d["risk"])[0]
    assert ours == pytest.approx(ref, abs=1e-12)
    assert 0.5 < ours < 0.75


# --- Uno --------------------------------------------------------------------------------------------


def test_uno_hand() -> None:
    train_t, train_e = [1.0, 2.0, 3.0, 4.0, 5.0], [1, 0, 1, 0, 1]
    # censoring KM: G(2) = 3/4, G(4) = 3/8; test events at 1.5, 2.5, 3.0 get weights 1, 16/9, 16/9
    t, e, r = [1.5, 2.5, 4.5, 3.0], [1, 1, 0, 1], [3.0, 1.0, 0.0, 2.0]
    got = uno_c(t, e, r, train_time=train_t, train_event=train_e)
    assert got == pytest.approx((3 + 32 / 9) / (3 + 48 / 9))


def test_uno_matches_sksurv_on_tcga_split(split) -> None:
    from sksurv.metrics import concordance_index_ipcw

    train, val = split
    tau_max = float(train["survival_months"].max())
    for tau in (None, 60.0, 24.0):
        ours = uno_c(
            val["survival_months"], val["event"], val["risk"],
            train_time=train["survival_months"], train_event=train["event"], tau=tau,
        )  # fmt: skip
        ref = concordance_index_ipcw(_y(train), _y(val), val["risk"].to_numpy(), tau=tau or tau_max)[0]
        assert ours == pytest.approx(ref, abs=1e-6), tau
    # the training patients scored against themselves
    ours = uno_c(
        train["survival_months"], train["event"], train["risk"],
        train_time=train["survival_months"], train_event=train["event"], tau=60.0,
    )  # fmt: skip
    ref = concordance_index_ipcw(_y(train), _y(train), train["risk"].to_numpy(), tau=60.0)[0]
    assert ours == pytest.approx(ref, abs=1e-6)


def test_uno_errors(split) -> None:
    train, val = split
    kw = {"train_time": train["survival_months"], "train_event": train["event"]}
    with pytest.raises(ValueError, match="exceed the longest training time"):
        uno_c(val["survival_months"] * 10, val["event"], val["risk"], tau=1e5, **kw)
    with pytest.raises(ValueError, match="No comparable pair"):
        uno_c([1.0, 2.0], [0, 0], [1.0, 2.0], **kw)


# --- groups, log-rank, discrete-time risk -----------------------------------------------------------


def test_risk_groups_and_logrank(blca: pd.DataFrame) -> None:
    from lifelines.statistics import logrank_test

    risk = blca["risk"].to_numpy()
    thr = float(np.median(risk))
    g = risk_groups(risk, thr)
    assert set(g) == {"high", "low"}
    assert ((g == "high") == (risk > thr)).all()
    t, e = blca["survival_months"].to_numpy(), blca["event"].to_numpy()
    hi = g == "high"
    ref = logrank_test(t[hi], t[~hi], event_observed_A=e[hi], event_observed_B=e[~hi]).p_value
    assert logrank_p(t, e, g) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="exactly two groups"):
        logrank_p(t, e, np.zeros(len(t)))
    with pytest.raises(ValueError, match="one label per patient"):
        logrank_p(t, e, g[:-1])


def test_risk_from_hazard_logits() -> None:
    logits = np.array([[np.log(3.0), -np.log(3.0)], [0.0, 0.0], [800.0, 800.0]])
    # S = (1/4, 3/16), (1/2, 1/4), (0, 0)
    np.testing.assert_allclose(risk_from_hazard_logits(logits), [-(1 / 4 + 3 / 16), -0.75, 0.0])
    with pytest.raises(ValueError, match="`logits` must be 2-D"):
        risk_from_hazard_logits(np.zeros(3))
