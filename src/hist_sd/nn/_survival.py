"""Survival losses: discrete-time NLL (MCAT / G-HANet), Cox partial likelihood, genomic reconstruction.

Conventions: ``event`` is 1 / True when the event was observed; ``censored`` (of the discrete-time loss, as in
MCAT) is its complement. A higher risk means an earlier expected event.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

__all__ = ["cox_ph_loss", "nll_survival_loss", "reconstruction_loss", "risk_from_logits"]


def _as_vector(x: torch.Tensor, name: str, n: int, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},), got {tuple(x.shape)}.")
    return x.to(like.device)


def _binary(x: torch.Tensor, name: str, n: int, like: torch.Tensor) -> torch.Tensor:
    x = _as_vector(x, name, n, like)
    if x.dtype != torch.bool:
        if not bool(((x == 0) | (x == 1)).all()):
            raise ValueError(f"`{name}` must be 0/1 or bool.")
        x = x == 1
    return x


def nll_survival_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    censored: torch.Tensor,
    *,
    alpha: float = 0.0,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Negative log-likelihood of a discrete-time survival model (Zadeh & Schmid 2020; MCAT, G-HANet).

    With hazards ``h = sigmoid(logits)``, survival ``S_k = prod_{l<=k} (1 - h_l)`` and ``S_{-1} = 1``, a
    patient with an event in interval ``y`` contributes ``-log S_{y-1} - log h_y`` and a patient censored in
    interval ``y`` contributes ``-log S_y``. ``S`` and ``h`` are clamped at ``eps`` (computed in log space).

    Parameters
    ----------
    logits
        ``(B, K)`` hazard logits.
    labels
        ``(B,)`` integer interval of each patient's time, ``0 .. K-1``.
    censored
        ``(B,)`` 1 / True for censored patients, 0 / False for observed events.
    alpha
        Weight in ``[0, 1]`` of an extra term on the uncensored patients only:
        ``(1 - alpha) * (uncensored + censored) + alpha * uncensored``.
    eps
        Lower clamp of the probabilities inside the logarithms.

    Returns
    -------
    The mean loss over the batch (a scalar).
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"`logits` must be a (B, K) tensor, got {getattr(logits, 'shape', type(logits))}.")
    b, k = logits.shape
    if b == 0:
        raise ValueError("`logits` has no rows; the loss of an empty batch is undefined.")
    y = _as_vector(labels, "labels", b, logits)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"`labels` must be an integer tensor, got {y.dtype}.")
    y = y.long()
    if bool((y < 0).any()) or bool((y >= k).any()):
        raise ValueError(f"`labels` must lie in 0..{k - 1} (K={k} time bins).")
    c = _binary(censored, "censored", b, logits).to(logits.dtype)
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha!r}.")
    if not 0.0 < float(eps) < 1.0:
        raise ValueError(f"`eps` must be in (0, 1), got {eps!r}.")
    log_eps = math.log(eps)
    log_h = F.logsigmoid(logits)
    log_s = torch.cumsum(F.logsigmoid(-logits), dim=1)
    log_s_pad = torch.cat([log_s.new_zeros(b, 1), log_s], dim=1)
    idx = y[:, None]
    s_before = log_s_pad.gather(1, idx)[:, 0].clamp_min(log_eps)
    s_at = log_s_pad.gather(1, idx + 1)[:, 0].clamp_min(log_eps)
    h_at = log_h.gather(1, idx)[:, 0].clamp_min(log_eps)
    uncensored = -(1.0 - c) * (s_before + h_at)
    cens = -c * s_at
    loss = (1.0 - alpha) * (uncensored + cens) + alpha * uncensored
    return loss.mean()


def cox_ph_loss(
    risk: torch.Tensor,
    time: torch.Tensor,
    event: torch.Tensor,
    *,
    ties: str = "efron",
    reduction: str = "mean",
) -> torch.Tensor:
    """Negative Cox partial log-likelihood of the risk scores (log hazard ratios).

    The risk set of a time ``t`` is every patient with time ``>= t``. Patients are sorted once by decreasing
    time, so the log of each risk-set sum is a ``logcumsumexp`` read at the end of each group of tied times
    (``O(n log n)``, no ``n x n`` matrix). Tied event times use Breslow's or Efron's approximation; with no
    ties both equal the exact partial likelihood.

    Parameters
    ----------
    risk
        ``(n,)`` (or ``(n, 1)``) risk scores.
    time
        ``(n,)`` follow-up times.
    event
        ``(n,)`` 1 / True where the event was observed.
    ties
        ``"efron"`` (as lifelines and R's ``coxph``) or ``"breslow"``.
    reduction
        ``"mean"``: divided by the number of events; ``"sum"``: the whole negative log-likelihood.

    Returns
    -------
    A scalar tensor.
    """
    if ties not in ("efron", "breslow"):
        raise ValueError(f"`ties` must be 'efron' or 'breslow', got {ties!r}.")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"`reduction` must be 'mean' or 'sum', got {reduction!r}.")
    if not isinstance(risk, torch.Tensor):
        raise TypeError(f"`risk` must be a torch tensor, got {type(risk).__name__}.")
    r = risk[:, 0] if risk.ndim == 2 and risk.shape[1] == 1 else risk
    if r.ndim != 1:
        raise ValueError(f"`risk` must have shape (n,) or (n, 1), got {tuple(risk.shape)}.")
    n = r.shape[0]
    t = _as_vector(time, "time", n, r)
    if bool(torch.isnan(t.to(torch.float64)).any()):
        raise ValueError("`time` has NaN values.")
    e = _binary(event, "event", n, r)
    n_events = int(e.sum())
    if n_events == 0:
        raise ValueError("`event` has no observed event; the Cox partial likelihood is undefined.")

    order = torch.argsort(t, descending=True, stable=True)
    r, t, e = r[order], t[order], e[order]
    _, group, counts = torch.unique_consecutive(t, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0) - 1
    log_risk_set = torch.logcumsumexp(r, dim=0)[ends]  # (G,) log sum of exp(risk) over time >= t_g
    ev_risk, ev_group = r[e], group[e]
    loglik = ev_risk - log_risk_set[ev_group]
    if ties == "efron":
        n_groups = counts.shape[0]
        d = torch.zeros(n_groups, dtype=torch.long, device=r.device).index_add_(
            0, ev_group, torch.ones_like(ev_group)
        )
        # log of the tied events' own sum, shifted by a per-group max (a constant, so detached)
        shift = torch.full((n_groups,), -torch.inf, dtype=r.dtype, device=r.device)
        shift = shift.scatter_reduce(0, ev_group, ev_risk.detach(), reduce="amax")
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        tied_sum = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add(
            0, ev_group, torch.exp(ev_risk - shift[ev_group])
        )
        safe = torch.where(d > 0, tied_sum, torch.ones_like(tied_sum))
        frac = torch.exp(torch.log(safe) + shift - log_risk_set)  # D_g / R_g in (0, 1]
        # rank l = 0 .. d_g - 1 of each event inside its group of tied times
        first = torch.cumsum(d, 0) - d
        rank = torch.arange(n_events, device=r.device) - first[ev_group]
        factor = rank.to(r.dtype) / d[ev_group].to(r.dtype)
        loglik = loglik - torch.log1p(-factor * frac[ev_group])
    total = -loglik.sum()
    return total / n_events if reduction == "mean" else total


def reconstruction_loss(preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Genomic reconstruction loss of G-HANet summed over gene families.

    For each family ``k`` with ``g_k > 0`` genes: ``mean_b (1 - cos(pred_b, target_b))^3 + MSE(pred, target)``
    (cosine over the genes of each patient, MSE over all entries). Families with no genes are skipped.

    Parameters
    ----------
    preds
        One ``(B, g_k)`` tensor per family.
    targets
        The matching ``(B, g_k)`` targets.

    Returns
    -------
    A scalar tensor; zero when there is nothing to reconstruct.
    """
    preds, targets = list(preds), list(targets)
    if len(preds) != len(targets):
        raise ValueError(
            f"`preds` and `targets` must have the same length, got {len(preds)} and {len(targets)}."
        )
    total: torch.Tensor | None = None
    for k, (p, y) in enumerate(zip(preds, targets, strict=True)):
        if not isinstance(p, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(f"`preds[{k}]` and `targets[{k}]` must be torch tensors.")
        if p.shape != y.shape or p.ndim != 2:
            raise ValueError(
                f"`preds[{k}]` and `targets[{k}]` must be (B, g) tensors of the same shape, got "
                f"{tuple(p.shape)} and {tuple(y.shape)}."
            )
        if p.shape[1] == 0:
            continue
        if p.shape[0] == 0:
            raise ValueError(f"`preds[{k}]` has no rows.")
        y = y.to(p.dtype)
        cos = F.cosine_similarity(p, y, dim=1)
        term = ((1.0 - cos) ** 3).mean() + F.mse_loss(p, y)
        total = term if total is None else total + term
    if total is None:
        return preds[0].new_zeros(()) if preds else torch.zeros(())
    return total


def risk_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Risk ``-sum_k S_k`` of discrete-time hazard logits ``(B, K)``, ``S = cumprod(1 - sigmoid(logits))``."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError(f"`logits` must be a (B, K) tensor, got {getattr(logits, 'shape', type(logits))}.")
    return -torch.cumprod(torch.sigmoid(-logits), dim=1).sum(dim=1)
