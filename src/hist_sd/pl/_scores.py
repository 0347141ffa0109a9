"""Distribution of per-gene scores per method or fold (benchmark figure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hist_sd.pl._utils import PathLike, finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["scores"]

#: Axis labels of the score columns hist_sd's evaluations write.
LABELS = {
    "pearson": "Pearson r per gene",
    "spearman": "Spearman ρ per gene",
    "auc": "AUC",
    "dice": "Dice",
    "iou": "IoU",
    "c_index": "C-index (Harrell)",
    "c_index_uno": "C-index (Uno)",
}


def scores(
    df: pd.DataFrame,
    column: str = "pearson",
    *,
    by: str | None = None,
    order: Sequence[str] | None = None,
    strip: bool = True,
    threshold: float | None = 0.3,
    title: str | None = None,
    ylabel: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: PathLike | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: float = 100.0,
    seed: int = 0,
    overwrite: bool = False,
) -> Figure | list[Axes] | None:
    """Box plot of a score (per-gene PCC by default) per method, fold or section, with the points on top.

    Parameters
    ----------
    df
        Tidy scores, e.g. :func:`hist_sd.tl.evaluate`'s table, or several of them concatenated with a
        ``method`` / ``fold`` column.
    column
        The score to plot.
    by
        Column whose groups get one box each; one box for all rows without it.
    order
        Order of the groups (default: sorted).
    strip
        Overlay the individual scores as jittered points.
    threshold
        Draw a dashed reference line at this score (None: none).
    title
        Axes title (say what was scored, e.g. the held-out section and the genes).
    ylabel
        Axis label; by default a readable name of ``column`` (``"Pearson r per gene"`` for ``"pearson"``).
    ax
        Draw into this Axes instead of a new figure.
    show
        Call ``plt.show()`` (and return None).
    save
        Write the figure to this path (PNG unless the suffix says otherwise), atomically.
    figsize
        Size of a new figure (default grows with the number of groups).
    dpi
        Resolution of a new figure and of the saved file.
    seed
        Seed of the jitter.
    overwrite
        Replace an existing file at ``save``.

    Returns
    -------
    The Figure (or, with ``ax``, ``[ax]``); None with ``show=True``.
    """
    import matplotlib.pyplot as plt

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"`df` must be a pandas DataFrame, got {type(df).__name__}.")
    if column not in df.columns:
        raise KeyError(f"`column`={column!r} is not a column of `df` (it has {list(df.columns)}).")
    values = pd.to_numeric(df[column], errors="coerce")
    if by is None:
        groups = {column: values.to_numpy(float)}
    else:
        if by not in df.columns:
            raise KeyError(f"`by`={by!r} is not a column of `df` (it has {list(df.columns)}).")
        keys = df[by].astype(str)
        names = list(order) if order is not None else sorted(keys.unique())
        unknown = [o for o in names if o not in set(keys)]
        if unknown:
            raise KeyError(f"`order`: {unknown} are not values of `df[{by!r}]`.")
        groups = {name: values[keys == name].to_numpy(float) for name in names}
    data = [v[np.isfinite(v)] for v in groups.values()]
    if not any(len(v) for v in data):
        raise ValueError(f"`df[{column!r}]` has no finite scores to plot.")

    own = ax is None
    if own:
        size = figsize or (max(3.0, 0.9 * len(data) + 1.5), 3.5)
        fig, ax = plt.subplots(figsize=size, dpi=dpi, layout="constrained")
    else:
        fig = ax.figure
    pos = np.arange(1, len(data) + 1)
    ax.boxplot(
        data,
        positions=pos,
        widths=0.6,
        showfliers=not strip,
        patch_artist=True,
        boxprops={"facecolor": "#d9e6f2", "edgecolor": "#4a6a8a"},
        medianprops={"color": "#c0392b"},
        whiskerprops={"color": "#4a6a8a"},
        capprops={"color": "#4a6a8a"},
    )
    if strip:
        rng = np.random.default_rng(seed)
        for p, v in zip(pos, data, strict=True):
            ax.scatter(
                p + rng.uniform(-0.18, 0.18, len(v)),
                v,
                s=6,
                color="#2c3e50",
                alpha=0.5,
                linewidths=0,
                zorder=3,
            )
    means = [float(np.mean(v)) if len(v) else np.nan for v in data]
    ax.scatter(pos, means, marker="D", s=22, color="#e67e22", zorder=4, label="mean")
    if threshold is not None:
        ax.axhline(threshold, ls="--", lw=0.8, color="grey", zorder=1, label=f"{threshold:g}")
    ax.set_xticks(pos, [f"{k}\n(n={len(v)})" for k, v in zip(groups, data, strict=True)], fontsize="small")
    ax.set_ylabel(ylabel or LABELS.get(column, column))
    if by is not None:
        ax.set_xlabel(by)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize="small", loc="best")
    if title is not None:
        ax.set_title(title)
    return finish(fig, [ax], own_figure=own, show=show, save=save, overwrite=overwrite, dpi=dpi)
