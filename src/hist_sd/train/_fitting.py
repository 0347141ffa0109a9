"""Everything fitted in closed form inside a training fold: standardisation, whitened PCA, PCA + ridge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hist_sd.model import HistModel, Section, TaskSpec

__all__ = [
    "DEFAULT_RIDGE_ALPHAS", "fit_ridge", "mean_std", "pca_projection", "standardise", "standardised", "whitened_pca",
]

#: Ridge penalties searched by generalised cross-validation (on the training spots only).
DEFAULT_RIDGE_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 6, 37))


def _in_tissue(sections: Sequence[Section], attr: str) -> np.ndarray:
    return np.concatenate([getattr(s, attr)[s.in_tissue] for s in sections]).astype(np.float64)


def standardise(
    sections: Sequence[Section], task: TaskSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Feature and target means and standard deviations of the in-tissue training spots.

    Targets are standardised only when the task asks for it (else mean 0 and standard deviation 1).
    """
    fm, fs = mean_std(_in_tissue(sections, "features"))
    n_out = sections[0].targets.shape[1]
    if task.regression:
        tm, ts = mean_std(_in_tissue(sections, "targets"), floor=1e-3)
    else:
        tm, ts = np.zeros(n_out), np.ones(n_out)
    return fm.astype(np.float32), fs.astype(np.float32), tm.astype(np.float32), ts.astype(np.float32)


def standardised(s: Section, fm: np.ndarray, fs: np.ndarray, tm: np.ndarray, ts: np.ndarray) -> Section:
    """A copy of ``s`` with standardised features and targets."""
    return replace(s, features=((s.features - fm) / fs).astype(np.float32), targets=((s.targets - tm) / ts).astype(np.float32))


def mean_std(x: np.ndarray, *, floor: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of ``x`` (float32); deviations below ``floor`` become 1."""
    x = np.asarray(x, np.float64)
    m, sd = x.mean(0), x.std(0)
    sd[sd < floor] = 1.0
    return m.astype(np.float32), sd.astype(np.float32)


def pca_projection(sections: Sequence[Section], k: int) -> np.ndarray:
    """Whitened PCA projection ``(d, k)`` of the (standardised) in-tissue training features."""
    return whitened_pca(_in_tissue(sections, "features"), k)


def whitened_pca(x: np.ndarray, k: int) -> np.ndarray:
    """Whitened PCA projection ``(d, k)`` of the rows of ``x`` (at most ``min(n, d)`` components)."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(0)
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    k = min(k, len(sv))
    scale = sv[:k] / np.sqrt(max(len(x) - 1, 1))
    scale[scale < 1e-8] = 1.0
    return (vt[:k].T / scale).astype(np.float32)


def fit_ridge(
    model: HistModel, sections: Sequence[Section], *, n_components: int | None, alphas: Sequence[float]
) -> None:
    """PCA (on training spots) + ridge with the penalty chosen by generalised cross-validation, as one linear map.

    Parameters
    ----------
    model
        The model whose ``net`` (a :class:`~hist_sd.nn.SpotLinear`) receives the fitted map.
    sections
        Standardised training sections.
    n_components
        Principal components kept before the ridge (``None``: all).
    alphas
        Penalties to choose from.
    """
    import torch

    alphas = np.asarray(list(alphas), dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
        raise ValueError(f"`ridge_alphas` must be a non-empty list of positive numbers, got {alphas.tolist()!r}.")
    x = _in_tissue(sections, "features")
    y = _in_tissue(sections, "targets")
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    k = vt.shape[0] if n_components is None else min(int(n_components), vt.shape[0])
    v = vt[:k].T  # (d, k)
    z = xc @ v
    u, s, wt = np.linalg.svd(z, full_matrices=False)
    uty = u.T @ yc
    n = len(x)
    best = (np.inf, float(alphas[0]))
    for alpha in alphas:
        f = s**2 / (s**2 + alpha)
        resid = ((yc - u @ (f[:, None] * uty)) ** 2).sum()
        gcv = resid / max(n - f.sum(), 1.0) ** 2
        if gcv < best[0]:
            best = (gcv, float(alpha))
    alpha = best[1]
    coef = v @ (wt.T @ ((s / (s**2 + alpha))[:, None] * uty))  # (d, g)
    bias = ym - xm @ coef
    with torch.no_grad():
        model.net.linear.weight.copy_(torch.from_numpy(coef.T.astype(np.float32)))
        model.net.linear.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    model.params.update({"ridge_alpha": float(alpha), "pca_components": int(k)})
