"""Tumour segmentation metrics per section (the HiST paper's list: AUC, IoU, Dice, sensitivity, ...)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._core._data import as_sections, resolve
from hist_sd._core._stats import SEGMENTATION_METRICS, segmentation_metrics
from hist_sd._docs import doc_params

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

__all__ = ["SEGMENTATION_METRICS", "evaluate_segmentation", "segmentation_metrics"]

@doc_params
def evaluate_segmentation(
    data: AnnData | SpatialData | Sequence[AnnData | SpatialData] | Mapping[str, AnnData | SpatialData],
    *,
    pred: str = C.TUMOR_PRED,
    truth: str = C.TUMOR,
    threshold: float = 0.5,
    table_key: str | None = None,
    mean_row: bool = False,
) -> pd.DataFrame:
    """Compare predicted tumour scores with true tumour labels, one row per section.

    Spots where ``pred`` or ``truth`` is missing (e.g. unlabelled spots) are left out. A spot is predicted
    tumour when ``pred >= threshold``. With TP, FP, TN, FN counted over the spots of a section:
    ``iou = TP / (TP + FP + FN)``, ``dice = 2 TP / (2 TP + FP + FN)``, ``sensitivity = TP / (TP + FN)``,
    ``precision = TP / (TP + FP)``, ``f1`` = harmonic mean of precision and sensitivity (equal to Dice for
    binary masks), ``specificity = TN / (TN + FP)``, ``accuracy = (TP + TN) / n``; a ratio whose
    denominator is 0 is NaN. ``auc`` is the area under the ROC curve of the continuous ``pred``
    (:func:`sklearn.metrics.roc_auc_score`); it is NaN, with a warning, when a section has one class only.

    Parameters
    ----------
    data
        One section, a list of sections (named by ``obs["section"]``) or a ``{name: section}`` dict.
    pred
        ``obs`` column with the predicted tumour probability or score (numeric or boolean).
    truth
        ``obs`` column with the true labels: boolean, or numeric 0/1.
    threshold
        Cut-off turning ``pred`` into a tumour call.
    %(tables_key)s
    mean_row
        Append a row ``"mean"`` with the means over sections.

    Returns
    -------
    DataFrame indexed by section (index name ``"section"``) with ``n_spots``, ``n_tumor`` (true tumour
    spots) and the metrics of :data:`SEGMENTATION_METRICS`. ``df.attrs["mean"]`` holds the means of the
    metrics over sections (NaNs skipped).
    """
    if not isinstance(threshold, int | float | np.number) or not np.isfinite(threshold):
        raise ValueError(f"`threshold` must be a finite number, got {threshold!r}.")
    sections = as_sections(data)
    rows: dict[str, dict[str, float]] = {}
    for name, d in sections.items():
        _, adata = resolve(d, table_key)
        p, t = _columns(adata, pred, truth, name)
        rows[name] = segmentation_metrics(t, p, threshold=float(threshold), name=name)
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "section"
    means = df[list(SEGMENTATION_METRICS)].mean(axis=0, skipna=True)
    if mean_row:
        extra = pd.DataFrame([{**df[["n_spots", "n_tumor"]].mean().to_dict(), **means.to_dict()}], index=["mean"])
        df = pd.concat([df, extra])
        df.index.name = "section"
    df.attrs["mean"] = {k: float(v) for k, v in means.items()}  # plain floats: DataFrames with attrs still concat
    return df


def _columns(adata: AnnData, pred: str, truth: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``truth`` of the spots where both are present, checked."""
    for arg, key in (("pred", pred), ("truth", truth)):
        if key not in adata.obs.columns:
            raise KeyError(
                f"Section {name!r}: `{arg}`={key!r} is not an `obs` column; it has {list(adata.obs.columns)}."
            )
    p = adata.obs[pred]
    t = adata.obs[truth]
    if not (pd.api.types.is_numeric_dtype(p) or pd.api.types.is_bool_dtype(p)):
        raise TypeError(f"Section {name!r}: `obs[{pred!r}]` (pred) must be numeric or boolean, got {p.dtype}.")
    if pd.api.types.is_bool_dtype(t) or (t.dtype == object and set(t.dropna().unique()) <= {True, False}):
        t_num = t.astype(float)
    elif pd.api.types.is_numeric_dtype(t):
        t_num = t.astype(float)
        bad = ~t_num.isna() & ~t_num.isin([0.0, 1.0])
        if bad.any():
            raise ValueError(
                f"Section {name!r}: `obs[{truth!r}]` (truth) must be boolean or 0/1; it has values "
                f"{sorted(pd.unique(t_num[bad]))[:5]}."
            )
    else:
        raise TypeError(f"Section {name!r}: `obs[{truth!r}]` (truth) must be boolean or 0/1, got {t.dtype}.")
    p_num = p.astype(float)
    keep = (~p_num.isna() & ~t_num.isna()).to_numpy()
    if not keep.all():
        logger.info("Section %s: %d spot(s) without pred or truth left out.", name, int((~keep).sum()))
    if not keep.any():
        raise ValueError(f"Section {name!r}: no spot has both `obs[{pred!r}]` and `obs[{truth!r}]`.")
    return p_num.to_numpy()[keep], t_num.to_numpy()[keep].astype(bool)
