"""Survival losses of hist_sd.nn._survival against lifelines, statsmodels and hand computations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hist_sd._core._survival import risk_from_hazard_logits
from hist_sd.nn._survival import cox_ph_loss, nll_survival_loss, reconstruction_loss, risk_from_logits

COLS = ["age", "TP53_rnaseq", "EGFR_rnaseq", "ERBB2_rnaseq"]


@pytest.fixture(scope="module")
def blca(data_dir: Path) -> pd.DataFrame:
    """TCGA-BLCA patients, one row per case (373, with tied survival times), and ``event = 1 - censorship``."""
    df = pd.read_csv(data_dir / "tcga" / "porpoise_mutsig" / "tcga_blca_all_clean.csv.zip")
    df = df.drop_duplicates("case_id").reset_index(drop=True)
    df["event"] = 1 - df["censorship"]
    assert df["survival_months"].duplicated().any()  # ties: Efron and Breslow differ
    return df


@pytest.fixture(scope="module")
def cph(blca: pd.DataFrame):
    from lifelines import CoxPHFitter

    return CoxPHFitter().fit(blca[[*COLS, "survival_months", "event"]], "survival_months", "event")


def _tensors(df: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(df[COLS].to_numpy(float)),
        torch.tensor(df["survival_months"].to_numpy(float)),
        torch.tensor(df["event"].to_numpy()),
    )


# --- Cox ---------------------------------------------------------------------------------------------


def test_cox_efron_equals_lifelines(blca: pd.DataFrame, cph) -> None:
    x, t, e = _tensors(blca)
    beta = torch.tensor(cph.params_[COLS].to_numpy())
    n_events = int(e.sum())
    loss = cox_ph_loss(x @ beta, t, e)
    assert loss.item() == pytest.approx(-cph.log_likelihood_ / n_events, abs=1e-5)
    total = cox_ph_loss(x @ beta, t, e, reduction="sum")
    assert total.item() == pytest.approx(-cph.log_likelihood_, rel=1e-9)
    # the patients' order does not matter
    perm = torch.randperm(len(t), generator=torch.Generator().manual_seed(0))
    assert cox_ph_loss((x @ beta)[perm], t[perm], e[perm]).item() == pytest.approx(loss.item(), rel=1e-12)


def test_cox_lbfgs_recovers_lifelines(blca: pd.DataFrame, cph) -> None:
    x, t, e = _tensors(blca)
    w = torch.zeros(len(COLS), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w], line_search_fn="strong_wolfe", max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-14
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = cox_ph_loss(x @ w, t, e)
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(w.detach().numpy(), cph.params_[COLS].to_numpy(), atol=1e-3)


def test_cox_breslow_equals_statsmodels(blca: pd.DataFrame, cph) -> None:
    from statsmodels.duration.hazard_regression import PHReg

    x, t, e = _tensors(blca)
    beta = cph.params_[COLS].to_numpy()
    for ties in ("breslow", "efron"):
        model = PHReg(t.numpy(), x.numpy(), status=e.numpy(), ties=ties)
        got = cox_ph_loss(x @ torch.tensor(beta), t, e, ties=ties, reduction="sum").item()
        assert got == pytest.approx(-model.loglike(beta), rel=1e-10), ties
    eff = cox_ph_loss(x @ torch.tensor(beta), t, e).item()
    bre = cox_ph_loss(x @ torch.tensor(beta), t, e, ties="breslow").item()
    assert eff != bre


def test_cox_hand_with_ties() -> None:
    # exp(risk) = 1, 2, 1, 3; two events tied at t=1 (risk set: all, R = 7, D = 3), one event at t=2 (R = 4)
    risk = torch.tensor([0.0, math.log(2.0), 0.0, math.log(3.0)], dtype=torch.float64)
    t = torch.tensor([1.0, 1.0, 2.0, 3.0])
    e = torch.tensor([1, 1, 1, 0])
    breslow = math.log(2) - 2 * math.log(7) - math.log(4)
    efron = math.log(2) - math.log(7) - math.log(7 - 1.5) - math.log(4)
    assert cox_ph_loss(risk, t, e, ties="breslow", reduction="sum").item() == pytest.approx(-breslow)
    assert cox_ph_loss(risk, t, e, ties="efron", reduction="sum").item() == pytest.approx(-efron)
    assert cox_ph_loss(risk, t, e, ties="efron").item() == pytest.approx(-efron / 3)
    # a censored patient tied with the events stays in their risk set; (n, 1) risks are accepted
    t2 = torch.tensor([1.0, 1.0, 1.0, 3.0])
    e2 = torch.tensor([True, True, False, False])
    efron2 = math.log(2) - math.log(7) - math.log(7 - 1.5)
    assert cox_ph_loss(risk[:, None], t2, e2, reduction="sum").item() == pytest.approx(-efron2)


def test_cox_no_ties_breslow_equals_efron_and_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    risk = torch.randn(50, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randperm(50, generator=g).double() + 1
    e = (torch.rand(50, generator=g) < 0.6).long()
    a = cox_ph_loss(risk, t, e, ties="efron")
    b = cox_ph_loss(risk, t, e, ties="breslow")
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    a.backward()
    assert torch.isfinite(risk.grad).all()
    # gradient sums to zero: adding a constant to every risk leaves the partial likelihood unchanged
    assert float(risk.grad.sum()) == pytest.approx(0.0, abs=1e-12)
    # large risks stay finite (log-space)
    big = cox_ph_loss(risk.detach() * 500, t, e)
    assert torch.isfinite(big)


def test_cox_errors() -> None:
    r, t = torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no observed event"):
        cox_ph_loss(r, t, torch.zeros(3))
    with pytest.raises(ValueError, match="`ties` must be 'efron' or 'breslow'"):
        cox_ph_loss(r, t, torch.ones(3), ties="exact")
    with pytest.raises(ValueError, match="`reduction`"):
        cox_ph_loss(r, t, torch.ones(3), reduction="none")
    with pytest.raises(ValueError, match=r"`time` must have shape \(3,\)"):
        cox_ph_loss(r, t[:2], torch.ones(3))
    with pytest.raises(ValueError, match="`event` must be 0/1"):
        cox_ph_loss(r, t, torch.tensor([0.0, 2.0, 1.0]))


# --- discrete-time NLL ------------------------------------------------------------------------------


def test_nll_hand() -> None:
    # h = (3/4, 1/4): S = (1/4, 3/16). Event in bin 0: -log h_0 = log 4/3. Censored in bin 1: -log S_1 = log 16/3
    logits = torch.tensor([[math.log(3.0), -math.log(3.0)]] * 2, dtype=torch.float64)
    labels = torch.tensor([0, 1])
    censored = torch.tensor([0, 1])
    unc, cens = math.log(4 / 3), math.log(16 / 3)
    assert nll_survival_loss(logits, labels, censored).item() == pytest.approx((unc + cens) / 2)
    got = nll_survival_loss(logits, labels, censored, alpha=0.4).item()
    assert got == pytest.approx((0.6 * (unc + cens) + 0.4 * unc) / 2)
    # an event in bin 1: -log S_0 - log h_1 = log 4 + log 4
    assert nll_survival_loss(logits[:1], torch.tensor([1]), torch.tensor([False])).item() == pytest.approx(
        2 * math.log(4)
    )
    # a patient censored in the last bin with zero logits: -log (1/2)^2
    z = torch.zeros(1, 2)
    assert nll_survival_loss(z, torch.tensor([1]), torch.tensor([1.0])).item() == pytest.approx(
        2 * math.log(2)
    )


def test_nll_clamps_at_eps_and_has_gradient() -> None:
    logits = torch.tensor([[50.0, 50.0]], requires_grad=True)
    loss = nll_survival_loss(logits, torch.tensor([1]), torch.tensor([0]), eps=1e-7)
    assert loss.item() == pytest.approx(-math.log(1e-7), rel=1e-5)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, generator=g, requires_grad=True)
    nll_survival_loss(
        x, torch.randint(0, 4, (8,), generator=g), torch.randint(0, 2, (8,), generator=g)
    ).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_nll_errors() -> None:
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"`labels` must lie in 0..2"):
        nll_survival_loss(z, torch.tensor([0, 3]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="`labels` must be an integer tensor"):
        nll_survival_loss(z, torch.tensor([0.0, 1.0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"`censored` must have shape \(2,\)"):
        nll_survival_loss(z, torch.tensor([0, 1]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="`alpha`"):
        nll_survival_loss(z, torch.tensor([0, 1]), torch.tensor([0, 1]), alpha=1.5)
    with pytest.raises(ValueError, match="`logits` must be a"):
        nll_survival_loss(torch.zeros(3), torch.tensor([0]), torch.tensor([0]))


# --- reconstruction, risk ---------------------------------------------------------------------------


def test_reconstruction_known_values() -> None:
    p1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # cos 1 and 0 -> mean (1-cos)^3 = 0.5; MSE = 2/4
    p2 = torch.tensor([[2.0], [-1.0]])
    y2 = torch.tensor([[1.0], [1.0]])  # cos 1 and -1 -> mean = 4; MSE = (1 + 4) / 2
    empty = torch.zeros(2, 0)
    assert reconstruction_loss([p1], [y1]).item() == pytest.approx(1.0)
    assert reconstruction_loss([p1, empty, p2], [y1, empty, y2]).item() == pytest.approx(1.0 + 6.5)
    zero = reconstruction_loss([empty], [empty])
    assert zero.shape == () and zero.item() == 0.0
    assert reconstruction_loss([], []).item() == 0.0
    # perfect reconstruction
    assert reconstruction_loss([p2], [p2.clone()]).item() == pytest.approx(0.0, abs=1e-7)


def test_reconstruction_errors() -> None:
    with pytest.raises(ValueError, match="same length"):
        reconstruction_loss([torch.zeros(2, 2)], [])
    with pytest.raises(ValueError, match=r"`preds\[0\]` and `targets\[0\]` must be \(B, g\)"):
        reconstruction_loss([torch.zeros(2, 2)], [torch.zeros(2, 3)])


def test_risk_from_logits_matches_numpy() -> None:
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    np.testing.assert_allclose(risk_from_logits(x).numpy(), risk_from_hazard_logits(x.numpy()), rtol=1e-12)
    # higher hazards early -> higher risk
    assert risk_from_logits(torch.tensor([[3.0, 0.0]]))[0] > risk_from_logits(torch.tensor([[-3.0, 0.0]]))[0]
