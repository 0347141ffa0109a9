"""Survival helpers without torch: checks, discrete-time bins, concordance indices, risk groups, log-rank.

Conventions: ``time`` is the follow-up (event or censoring) time, ``event`` is True / 1 when the event (death)
was observed and False / 0 when the patient was censored; a higher ``risk`` means an earlier expected event.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = [
    "check_survival",
    "discretize",
    "harrell_c",
    "logrank_p",
    "risk_from_hazard_logits",
    "risk_groups",
    "time_bins",
    "uno_c",
]

logger = logging.getLogger(__name__)


def check_survival(time: Any, event: Any, *, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Check survival outcomes and return them as ``(float64 times, bool events)``.

    Parameters
    ----------
    time
        Follow-up times, 1-D, finite and ``>= 0``.
    event
        Event indicators of the same length: bools, or numbers that are all 0 or 1 (1 = event observed).
    n
        Expected number of patients (e.g. the length of the risk scores), checked when given.

    Returns
    -------
    The times as a float64 array and the events as a bool array.
    """
    try:
        t = np.asarray(time, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("`time` must be numeric (follow-up times).") from None
    if t.ndim != 1:
        raise ValueError(f"`time` must be 1-D, got shape {t.shape}.")
    if np.isnan(t).any():
        raise ValueError(f"`time` has {int(np.isnan(t).sum())} NaN value(s); drop those patients first.")
    if not np.isfinite(t).all():
        raise ValueError("`time` must be finite; it has infinite values.")
    if (t < 0).any():
        raise ValueError(f"`time` must be >= 0, got a minimum of {t.min()!r}.")
    e_raw = np.asarray(event)
    if e_raw.ndim != 1:
        raise ValueError(f"`event` must be 1-D, got shape {e_raw.shape}.")
    if e_raw.dtype == bool:
        e = e_raw
    else:
        try:
            e_num = e_raw.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError("`event` must hold bools or 0/1 values (1 = event observed).") from None
        bad = ~np.isin(e_num, (0.0, 1.0))
        if bad.any():
            raise ValueError(
                f"`event` must be binary (bools or 0/1, 1 = event observed); it has {int(bad.sum())} other "
                f"value(s), e.g. {e_raw[bad][0]!r}."
            )
        e = e_num == 1.0
    if len(e) != len(t):
        raise ValueError(f"`time` and `event` must have the same length, got {len(t)} and {len(e)}.")
    if n is not None and len(t) != n:
        raise ValueError(f"`time` and `event` must have {n} entries (one per patient), got {len(t)}.")
    return t, e.astype(bool, copy=False)


def _check_risk(risk: Any, n: int, name: str = "risk") -> np.ndarray:
    r = np.asarray(risk, dtype=np.float64)
    if r.ndim == 2 and 1 in r.shape:
        r = r.ravel()
    if r.ndim != 1 or len(r) != n:
        raise ValueError(f"`{name}` must be 1-D with one score per patient ({n}), got shape {r.shape}.")
    if not np.isfinite(r).all():
        raise ValueError(f"`{name}` must be finite; it has {int((~np.isfinite(r)).sum())} NaN/inf value(s).")
    return r


def time_bins(time: Any, event: Any, n_bins: int = 4) -> np.ndarray:
    """Inner cut points of ``n_bins`` discrete-time intervals: quantiles of the observed event times.

    Only uncensored patients set the cuts (as in MCAT / PORPOISE / G-HANet), and only the training patients
    should be passed, so that held-out patients never influence the bins.

    Parameters
    ----------
    time
        Follow-up times of the (training) patients.
    event
        Event indicators (1 / True = event observed).
    n_bins
        Number of intervals (``>= 2``).

    Returns
    -------
    The ``n_bins - 1`` increasing cut points (``np.quantile`` of the event times at ``1/n, ..., (n-1)/n``).
    """
    t, e = check_survival(time, event)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 2:
        raise ValueError(f"`n_bins` must be an integer >= 2, got {n_bins!r}.")
    n_events = int(e.sum())
    if n_events < n_bins:
        raise ValueError(
            f"`time_bins` needs at least `n_bins`={n_bins} observed events to place the cuts, got {n_events}."
        )
    return np.quantile(t[e], np.arange(1, n_bins) / n_bins)


def discretize(time: Any, cuts: Any) -> np.ndarray:
    """Discrete-time labels ``0 .. len(cuts)`` of ``time`` for the inner cut points ``cuts``.

    A time equal to a cut point falls into the later interval (``np.searchsorted(cuts, time, side="right")``).
    """
    t = np.asarray(time, dtype=np.float64)
    c = np.asarray(cuts, dtype=np.float64)
    if c.ndim != 1 or not np.isfinite(c).all() or (np.diff(c) < 0).any():
        raise ValueError("`cuts` must be a 1-D, finite, non-decreasing array of cut points.")
    if np.isnan(t).any():
        raise ValueError("`time` has NaN values.")
    return np.searchsorted(c, t, side="right").astype(np.int64)


def harrell_c(time: Any, event: Any, risk: Any) -> float:
    """Harrell's concordance index; a higher ``risk`` predicts an earlier event.

    Computed with :func:`lifelines.utils.concordance_index` on ``-risk``; pairs with tied risks count 1/2.

    Raises
    ------
    ValueError
        When no pair of patients is comparable (e.g. no event, or all events at the longest time).
    """
    from lifelines.utils import concordance_index

    t, e = check_survival(time, event)
    r = _check_risk(risk, len(t))
    try:
        return float(concordance_index(t, -r, e))
    except ZeroDivisionError:
        raise ValueError(
            "No comparable pair of patients (a pair needs an observed event before the other's time); "
            "the C-index is undefined."
        ) from None


def _censoring_survival(train_time: np.ndarray, train_event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate of the censoring survival ``G``: unique times and ``G`` just after each.

    At a tied time events are taken to happen before censorings (they leave the censoring risk set).
    """
    uniq, inv = np.unique(train_time, return_inverse=True)
    n_at = len(train_time) - np.r_[0, np.cumsum(np.bincount(inv))[:-1]]
    n_event = np.bincount(inv, weights=train_event.astype(float), minlength=len(uniq))
    n_cens = np.bincount(inv, weights=(~train_event).astype(float), minlength=len(uniq))
    at_risk = n_at - n_event
    ratio = np.divide(n_cens, at_risk, out=np.zeros(len(uniq)), where=n_cens > 0)
    return uniq, np.cumprod(1.0 - ratio)


def uno_c(
    time: Any,
    event: Any,
    risk: Any,
    *,
    train_time: Any,
    train_event: Any,
    tau: float | None = None,
    tied_tol: float = 1e-8,
) -> float:
    """Uno's IPCW concordance index (Uno et al., Stat Med 2011); a higher ``risk`` predicts an earlier event.

    A pair ``(i, j)`` is comparable when patient ``i`` had the event at ``t_i < tau`` and ``t_j > t_i`` (or
    ``t_j == t_i`` with ``j`` censored); it is weighted by ``1 / G(t_i)^2``, where ``G`` is the Kaplan-Meier
    survival function of the *censoring* times of the training patients, evaluated at ``t_i`` including
    censorings at ``t_i`` (the convention of :func:`sksurv.metrics.concordance_index_ipcw`, which this matches).
    Concordant pairs count 1, pairs whose risks differ by at most ``tied_tol`` count 1/2.

    Parameters
    ----------
    time, event
        Outcomes of the evaluated (test) patients.
    risk
        Their risk scores.
    train_time, train_event
        Outcomes of the training patients, used only to estimate the censoring distribution.
    tau
        Truncation time: only events before ``tau`` count as the earlier member of a pair. Default: the
        longest training time.
    tied_tol
        Tolerance under which two risks are tied.

    Returns
    -------
    The C-index in ``[0, 1]``.
    """
    t, e = check_survival(time, event)
    r = _check_risk(risk, len(t))
    tt, te = check_survival(train_time, train_event)
    if len(tt) == 0:
        raise ValueError("`train_time` is empty; the censoring distribution needs training patients.")
    tau = float(tt.max()) if tau is None else float(tau)
    if not np.isfinite(tau) or tau <= 0:
        raise ValueError(f"`tau` must be a positive finite time, got {tau!r}.")
    uniq, g_after = _censoring_survival(tt, te)
    use = e & (t < tau)
    if (t[use] > uniq[-1]).any():
        raise ValueError(
            f"Test event times before `tau`={tau} exceed the longest training time {uniq[-1]}; "
            "the censoring distribution is unknown there. Pass a smaller `tau`."
        )
    idx = np.searchsorted(uniq, t[use], side="right") - 1  # last training time <= t_i
    g = np.where(idx >= 0, g_after[np.maximum(idx, 0)], 1.0)
    if (g <= 0).any():
        raise ValueError(
            f"The censoring survival function reaches 0 before some test events (before `tau`={tau}); "
            "pass a smaller `tau`."
        )
    w = 1.0 / g**2
    ti, ri = t[use], r[use]
    num = den = 0.0
    for start in range(0, len(ti), 512):  # blocks of events x all patients keep memory bounded
        sl = slice(start, start + 512)
        later = t[None, :] > ti[sl, None]
        tied_cens = (t[None, :] == ti[sl, None]) & ~e[None, :]
        comparable = later | tied_cens
        diff = ri[sl, None] - r[None, :]
        score = np.where(np.abs(diff) <= tied_tol, 0.5, (diff > 0).astype(float))
        num += float(np.sum(w[sl] * np.sum(comparable * score, axis=1)))
        den += float(np.sum(w[sl] * comparable.sum(axis=1)))
    if den == 0:
        raise ValueError(
            "No comparable pair of patients with an event before `tau`; Uno's C-index is undefined."
        )
    return num / den


def risk_groups(risk: Any, threshold: float) -> np.ndarray:
    """``"high"`` where ``risk > threshold``, else ``"low"`` (use the training fold's median as threshold)."""
    r = np.asarray(risk, dtype=np.float64).ravel()
    if np.isnan(r).any():
        raise ValueError("`risk` has NaN values.")
    thr = float(threshold)
    if not np.isfinite(thr):
        raise ValueError(f"`threshold` must be finite, got {threshold!r}.")
    return np.where(r > thr, "high", "low").astype(object)


def logrank_p(time: Any, event: Any, groups: Any) -> float:
    """P-value of the two-group log-rank test (:func:`lifelines.statistics.logrank_test`).

    Parameters
    ----------
    time, event
        Outcomes of the patients.
    groups
        One label per patient; exactly two distinct labels.
    """
    from lifelines.statistics import logrank_test

    t, e = check_survival(time, event)
    g = np.asarray(groups, dtype=object).ravel()
    if len(g) != len(t):
        raise ValueError(f"`groups` must have one label per patient ({len(t)}), got {len(g)}.")
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in g):
        raise ValueError("`groups` has missing labels.")
    labels = list(dict.fromkeys(g.tolist()))
    if len(labels) != 2:
        raise ValueError(f"The log-rank test needs exactly two groups, got {len(labels)}: {labels[:10]}.")
    a = g == labels[0]
    res = logrank_test(t[a], t[~a], event_observed_A=e[a], event_observed_B=e[~a])
    return float(res.p_value)


def risk_from_hazard_logits(logits: Any) -> np.ndarray:
    """Risk of a discrete-time survival model: ``-sum_k S_k`` with ``S = cumprod(1 - sigmoid(logits))``.

    Parameters
    ----------
    logits
        ``(n, K)`` hazard logits, one column per time interval.

    Returns
    -------
    ``(n,)`` risks; a higher risk is a lower expected survival.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"`logits` must be 2-D (patients, time bins), got shape {z.shape}.")
    # 1 - sigmoid(z) = sigmoid(-z), computed without overflow
    surv = np.cumprod(np.exp(-np.logaddexp(0.0, z)), axis=1)
    return -surv.sum(axis=1)
