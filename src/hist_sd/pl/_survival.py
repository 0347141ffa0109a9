"""Kaplan-Meier curves of risk groups with the log-rank p-value."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hist_sd._core._survival import check_survival, logrank_p, risk_groups
from hist_sd.pl._utils import PathLike, save_figure

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

__all__ = ["kaplan_meier"]

_COLORS = {"high": "#c0392b", "low": "#2471a3"}
logger = logging.getLogger("hist_sd")


def _patients(data: Any) -> AnnData:
    from anndata import AnnData

    if isinstance(data, AnnData):
        return data
    patients = getattr(data, "patients", None)
    if isinstance(patients, AnnData):
        return patients
    raise TypeError(
        f"`data` must be a patients AnnData or an object with a `.patients` AnnData (a cohort), "
        f"got {type(data).__name__}."
    )


def _obs_column(adata: AnnData, key: str, what: str) -> pd.Series:
    if key not in adata.obs.columns:
        raise KeyError(
            f"`{what}`={key!r} is not a column of the patients' obs (it has {list(adata.obs.columns)})."
        )
    return adata.obs[key]


def _groups(
    adata: AnnData, key: str, threshold: float | None, groups_key: str | None
) -> tuple[np.ndarray, str]:
    """Group label per patient and a legend heading saying how the groups were made."""
    if groups_key is not None:
        g = _obs_column(adata, groups_key, "groups_key")
        if g.isna().any():
            raise ValueError(f"`obs[{groups_key!r}]` has {int(g.isna().sum())} missing group label(s).")
        return g.astype(str).to_numpy(object), groups_key
    risk = pd.to_numeric(_obs_column(adata, key, "key"), errors="coerce").to_numpy(np.float64)
    if not np.isfinite(risk).all():
        raise ValueError(
            f"`obs[{key!r}]` must hold finite risk scores; it has NaN/inf or non-numeric values."
        )
    if threshold is None:
        threshold = float(np.median(risk))
    return risk_groups(risk, threshold), f"{key} > {threshold:.3g}"


def kaplan_meier(
    data: Any,
    *,
    key: str = "risk",
    time_key: str = "survival_months",
    event_key: str = "event",
    threshold: float | None = None,
    groups_key: str | None = None,
    at_risk: bool = False,
    ci_show: bool = False,
    ax: Axes | None = None,
    title: str | None = None,
    show: bool | None = None,
    save: PathLike | None = None,
    figsize: tuple[float, float] = (4.5, 3.8),
    dpi: float = 100.0,
    overwrite: bool = False,
) -> Axes | None:
    """Kaplan-Meier curves of high- and low-risk patients, with the log-rank p-value in the legend.

    Parameters
    ----------
    data
        Patients as an AnnData (one row per patient), or a cohort object holding them in ``.patients``.
    key
        ``obs`` column of the risk scores (higher = earlier expected event).
    time_key
        ``obs`` column of the follow-up times.
    event_key
        ``obs`` column of the event indicators (1 / True = event observed).
    threshold
        Patients with ``risk > threshold`` are "high" risk. Default: the median risk of the patients shown;
        for held-out patients pass the training fold's median.
    groups_key
        Use this ``obs`` column (exactly two groups) instead of splitting the risk.
    at_risk
        Add the numbers at risk below the axes.
    ci_show
        Shade the 95% confidence bands.
    ax
        Draw into this Axes instead of a new figure.
    title
        Axes title.
    show
        Call ``plt.show()`` (and return None).
    save
        Write the figure to this path (PNG unless the suffix says otherwise), atomically.
    figsize
        Size of a new figure.
    dpi
        Resolution of a new figure and of the saved file.
    overwrite
        Replace an existing file at ``save``.

    Returns
    -------
    The Axes; None with ``show=True``.
    """
    import matplotlib.pyplot as plt
    from lifelines import KaplanMeierFitter

    adata = _patients(data)
    column = groups_key if groups_key is not None else key
    if column in adata.obs.columns:  # patients without a risk (not scored, e.g. training patients) are left out
        values = adata.obs[column]
        scored = values.notna().to_numpy() & (values.astype(str) != "").to_numpy()
        if not scored.any():
            raise ValueError(f"`obs[{column!r}]` holds no value: score the patients first.")
        if not scored.all():
            logger.info("kaplan_meier: %d patient(s) without %r left out", int((~scored).sum()), column)
            adata = adata[scored]
    time, event = check_survival(
        pd.to_numeric(_obs_column(adata, time_key, "time_key"), errors="coerce").to_numpy(np.float64),
        _obs_column(adata, event_key, "event_key").to_numpy(),
    )
    groups, heading = _groups(adata, key, threshold, groups_key)
    labels = [g for g in ("high", "low") if g in set(groups)] if groups_key is None else sorted(set(groups))
    if len(labels) != 2:
        raise ValueError(
            f"Kaplan-Meier comparison needs two non-empty groups, got {labels} "
            f"({'`groups_key`' if groups_key else '`threshold`'} puts every patient in one group)."
        )
    p = logrank_p(time, event, groups)

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, dpi=dpi, layout="constrained")
    else:
        fig = ax.figure
    fitters = []
    for name in labels:
        sel = groups == name
        kmf = KaplanMeierFitter(label=f"{name} (n={int(sel.sum())})")
        kmf.fit(time[sel], event[sel])
        kmf.plot_survival_function(
            ax=ax, ci_show=ci_show, show_censors=True, color=_COLORS.get(name), censor_styles={"ms": 4}
        )
        fitters.append(kmf)
    ax.legend(
        title=f"{heading}\nlog-rank p = {p:.3g}", fontsize="small", title_fontsize="small", frameon=False
    )
    ax.set_xlabel(time_key.replace("_", " ").replace("months", "(months)") if time_key == "survival_months"
                  else time_key)
    ax.set_ylabel("survival probability")
    ax.set_ylim(0.0, 1.05)
    ax.spines[["top", "right"]].set_visible(False)
    if title is not None:
        ax.set_title(title)
    if at_risk:
        from lifelines.plotting import add_at_risk_counts

        add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"])
    if save is not None:
        save_figure(fig, save, overwrite=overwrite, dpi=dpi)
    if show:
        plt.show()
        return None
    return ax
