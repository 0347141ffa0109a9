"""Correlations and summaries with one vocabulary (``n``, ``mean``, ``median``, ``std``, ``ci_low``, ``ci_high``)."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "SEGMENTATION_METRICS",
    "correlate",
    "mean_ci",
    "morans_i",
    "n_components",
    "pearson_columns",
    "segmentation_metrics",
]

#: Metric columns of :func:`hist_sd.tl.evaluate_segmentation`, in order.
SEGMENTATION_METRICS: tuple[str, ...] = (
    "auc", "iou", "dice", "sensitivity", "precision", "f1", "specificity", "accuracy",
)  # fmt: skip


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of matching columns of two complete ``(n, g)`` arrays; NaN where a column is constant."""
    n, g = a.shape
    out = np.full(g, np.nan)
    if n < 2:
        return out
    ok = (np.ptp(a, axis=0) > 0) & (np.ptp(b, axis=0) > 0)
    if not ok.any():
        return out
    ac = a[:, ok] - a[:, ok].mean(axis=0)
    bc = b[:, ok] - b[:, ok].mean(axis=0)
    num = (ac * bc).sum(axis=0)
    den = np.sqrt((ac * ac).sum(axis=0) * (bc * bc).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 0, num / den, np.nan)
    out[ok] = np.clip(r, -1.0, 1.0)
    return out


def morans_i(values: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Moran's I of every column of ``(n, g)`` values on a graph of ``(E, 2)`` neighbour pairs (binary weights).

    ``I = n / W * sum_ij w_ij z_i z_j / sum_i z_i^2`` with ``z`` the centred column and ``W`` the number of
    (directed) pairs; NaN for a constant column or a graph without edges. Predictions that are smoother than
    the measured expression have a higher I (spatial structure a downstream tool would take as real).
    """
    x = np.asarray(values, dtype=np.float64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.full(x.shape[1], np.nan)
    if len(pairs) == 0 or x.shape[0] < 2:
        return out
    z = x - x.mean(axis=0)
    den = (z * z).sum(axis=0)
    num = (z[pairs[:, 0]] * z[pairs[:, 1]]).sum(axis=0)
    ok = den > 0
    out[ok] = x.shape[0] / len(pairs) * num[ok] / den[ok]
    return out


def n_components(values: np.ndarray, fraction: float = 0.9) -> int:
    """The number of principal components that carry ``fraction`` of the variance of ``(n, g)`` values."""
    x = np.asarray(values, dtype=np.float64)
    x = x - x.mean(axis=0)
    var = np.linalg.svd(x, compute_uv=False) ** 2
    if var.sum() <= 0:
        return 0
    return int(np.searchsorted(np.cumsum(var) / var.sum(), fraction) + 1)


def _rank_columns(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=0, method="average") if a.size else a


def correlate(pred: np.ndarray, meas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column Pearson and Spearman r of two ``(n, g)`` arrays and the number of spots used per column.

    Spots where either value is not finite are left out of that column only.
    """
    pred = np.asarray(pred, dtype=np.float64)
    meas = np.asarray(meas, dtype=np.float64)
    if pred.shape != meas.shape:
        raise ValueError(f"Predicted {pred.shape} and measured {meas.shape} values must have the same shape.")
    g = pred.shape[1]
    finite = np.isfinite(pred) & np.isfinite(meas)
    n_spots = finite.sum(axis=0)
    pearson = np.full(g, np.nan)
    spearman = np.full(g, np.nan)
    full = finite.all(axis=0)
    if full.any():
        p, m = pred[:, full], meas[:, full]
        pearson[full] = pearson_columns(p, m)
        spearman[full] = pearson_columns(_rank_columns(p), _rank_columns(m))
    for j in np.flatnonzero(~full):
        keep = finite[:, j]
        p, m = pred[keep, j : j + 1], meas[keep, j : j + 1]
        pearson[j] = pearson_columns(p, m)[0]
        spearman[j] = pearson_columns(_rank_columns(p), _rank_columns(m))[0]
    return pearson, spearman, n_spots


def mean_ci(values: np.ndarray, *, confidence: float = 0.95) -> dict[str, float]:
    """``n``, ``mean``, ``median``, ``std`` and a two-sided t-interval of the mean (``ci_low``, ``ci_high``).

    Non-finite values are left out; with fewer than two values the spread and interval are NaN.
    """
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    mean = float(v.mean()) if n else float("nan")
    std = float(v.std(ddof=1)) if n > 1 else float("nan")
    if n > 1:
        half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * std / np.sqrt(n)
        lo, hi = float(mean - half), float(mean + half)
    else:
        lo = hi = float("nan")
    return {"n": n, "mean": mean, "median": float(np.median(v)) if n else float("nan"), "std": std,
            "ci_low": lo, "ci_high": hi}


def segmentation_metrics(
    truth: np.ndarray, pred: np.ndarray, *, threshold: float = 0.5, name: str = "section"
) -> dict[str, float]:
    """Segmentation metrics of one section from boolean ``truth`` and numeric ``pred`` arrays (no NaNs).

    Parameters
    ----------
    truth
        True tumour labels (bool or 0/1).
    pred
        Predicted score or probability.
    threshold
        ``pred >= threshold`` is a tumour call.
    name
        Section name used in warnings.

    Returns
    -------
    ``{"n_spots", "n_tumor", "auc", "iou", ...}`` (see :func:`hist_sd.tl.evaluate_segmentation`).
    """
    from sklearn.metrics import roc_auc_score

    t = np.asarray(truth).astype(bool).ravel()
    p = np.asarray(pred, dtype=float).ravel()
    if t.shape != p.shape:
        raise ValueError(f"`truth` and `pred` must have the same length, got {t.size} and {p.size}.")
    call = p >= threshold
    tp = float(np.sum(call & t))
    fp = float(np.sum(call & ~t))
    tn = float(np.sum(~call & ~t))
    fn = float(np.sum(~call & t))
    if t.size and 0 < t.sum() < t.size:
        auc = float(roc_auc_score(t, p))
    else:
        warnings.warn(
            f"Section {name!r}: the truth has only one class ({int(t.sum())} tumour of {t.size} spots); AUC is NaN.",
            UserWarning,
            stacklevel=3,
        )
        auc = np.nan
    sens = _ratio(tp, tp + fn)
    prec = _ratio(tp, tp + fp)
    f1 = _ratio(2 * prec * sens, prec + sens) if np.isfinite(prec) and np.isfinite(sens) else np.nan
    return {
        "n_spots": int(t.size),
        "n_tumor": int(t.sum()),
        "auc": auc,
        "iou": _ratio(tp, tp + fp + fn),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "sensitivity": sens,
        "precision": prec,
        "f1": f1,
        "specificity": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else np.nan
