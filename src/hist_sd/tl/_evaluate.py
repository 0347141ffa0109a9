"""Per-gene agreement between predicted and measured expression (the HEST-benchmark metrics)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._core._data import resolve
from hist_sd._core._expr import KINDS, classify, measured_genes, measured_matrix, spots_to_score
from hist_sd._core._params import check_key_free, input_keys, log_written, store_params
from hist_sd._core._stats import correlate, mean_ci
from hist_sd._core._warnings import ExpressionScaleWarning
from hist_sd._docs import doc_params
from hist_sd.get._accessors import prediction_matrix

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

__all__ = ["evaluate", "summarize_scores"]


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------
@doc_params
def evaluate(
    data: AnnData | SpatialData,
    *,
    pred_key: str = C.PRED,
    genes: str | Iterable[str] | None = None,
    layer: str | None = None,
    table_key: str | None = None,
    key_added: str | None = None,
    in_tissue_only: bool = True,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Score predicted against measured expression, gene by gene.

    For every gene, the Pearson and Spearman correlation between predicted and measured values across the
    spots of the section (the HEST-benchmark protocol: one correlation per gene over the spots of a held-out
    slide). Genes that are constant over the spots, in either the prediction or the measurement, have no
    correlation: they get NaN and one warning lists them.

    Parameters
    ----------
    data
        A table, or a SpatialData holding it.
    pred_key
        Predictions in ``obsm[pred_key]`` (spots x model genes): a DataFrame with gene columns, or an array whose
        gene names are ``uns[pred_key]["genes"]``.
    genes
        Genes to score; by default every predicted gene that the table measures (``var_names``).
    layer
        Measured expression from ``layers[layer]``, used as it is. By default ``.X`` is used, and when it holds
        raw counts (non-negative integers) it is compared on the scale the models are trained on:
        ``log1p`` of counts normalised to 10,000 per spot (``sc.pp.normalize_total(target_sum=1e4)`` over all
        genes, then ``sc.pp.log1p``). Already normalised ``.X`` is used as it is; when its scale cannot be told
        (non-negative, non-integer, no ``uns["log1p"]`` marker) an :class:`~hist_sd.ExpressionScaleWarning` says
        so. The scale used is logged and stored as ``measured_scale``.
    %(table_key)s
    key_added
        When given, store the per-gene table and its summary in ``uns[key_added]`` (``"scores"``,
        ``"summary"``, ``"params"``).
    in_tissue_only
        Score only spots with a truthy ``obs["in_tissue"]`` (all spots when there is no such column).
    overwrite
        Replace an existing ``uns[key_added]``.

    Returns
    -------
    A tidy DataFrame, one row per gene: ``gene``, ``pearson``, ``spearman``, ``n_spots`` (spots scored), sorted
    by ``pearson`` (highest first, NaN last). :func:`summarize_scores` condenses it.
    """
    _, adata = resolve(data, table_key)
    if key_added is not None:
        check_key_free(adata.uns, key_added, "uns", overwrite=overwrite, protected=input_keys(adata, "uns"))
    values, pred_genes = prediction_matrix(adata, pred_key)
    if genes is None:
        use = measured_genes(adata, pred_genes)
        if not use:
            raise ValueError(
                f"None of the genes predicted in `obsm[{pred_key!r}]` is in the table's `var_names`."
            )
    else:
        use = [genes] if isinstance(genes, str) else [str(g) for g in genes]
        if not use:
            raise ValueError("`genes` is empty.")
        known = set(pred_genes)
        unknown = [g for g in use if g not in known]
        if unknown:
            shown = ", ".join(repr(g) for g in unknown[:10]) + (" …" if len(unknown) > 10 else "")
            raise KeyError(
                f"`genes`: {len(unknown)} gene(s) are not predicted in `obsm[{pred_key!r}]`: {shown}."
            )
        if len(set(use)) != len(use):
            raise ValueError("`genes` has duplicates.")
    mask = spots_to_score(adata, in_tissue_only)
    if layer is None and classify(adata.X, adata.uns) == "non-negative":
        warnings.warn(
            f"`X` holds {KINDS['non-negative']}; it is scored as it is, while the predictions are log1p of counts "
            "per 10,000. Mark log-normalised data with `uns['log1p']` or keep raw counts in `X`.",
            ExpressionScaleWarning,
            stacklevel=2,
        )
    meas, scale = measured_matrix(adata, use, layer=layer)
    col = {g: i for i, g in enumerate(pred_genes)}
    pred = values[:, [col[g] for g in use]]
    pearson, spearman, n_spots = correlate(pred[mask], meas[mask])

    undefined = np.isnan(pearson)
    if undefined.any():
        names = [g for g, u in zip(use, undefined, strict=True) if u]
        logger.warning(
            "%d of %d genes have no correlation (constant over the %d spots, or fewer than 2 spots): NaN for %s%s",
            len(names),
            len(use),
            int(mask.sum()),
            ", ".join(names[:10]),
            " …" if len(names) > 10 else ".",
        )
    df = pd.DataFrame({"gene": use, "pearson": pearson, "spearman": spearman, "n_spots": n_spots.astype(int)})
    df = df.sort_values("pearson", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    mean_r = float(np.nanmean(pearson)) if (~undefined).any() else float("nan")
    logger.info(
        "scored %d genes on %d spots (%s): mean Pearson %.3f", len(use), int(mask.sum()), scale, mean_r
    )
    if key_added is not None:
        params = {
            "pred_key": pred_key,
            "genes": list(use) if genes is not None else None,
            "layer": layer,
            "in_tissue_only": in_tissue_only,
            "measured_scale": scale,
        }
        if overwrite:
            adata.uns.pop(key_added, None)
        store_params(adata, key_added, params)
        adata.uns[key_added]["scores"] = df.copy()
        adata.uns[key_added]["summary"] = {k: v for k, v in summarize_scores(df).items() if k != "column"}
        log_written("uns", key_added)
    return df


def _summary(values: np.ndarray, *, threshold: float, confidence: float) -> dict[str, float]:
    v = values[np.isfinite(values)]
    n_above = int((v > threshold).sum())
    return {
        **mean_ci(v, confidence=confidence),
        "n_above": n_above,
        "frac_above": n_above / v.size if v.size else float("nan"),
        "threshold": float(threshold),
        "confidence": float(confidence),
    }


def summarize_scores(
    df: pd.DataFrame,
    column: str = "pearson",
    *,
    by: str | Sequence[str] | None = None,
    threshold: float = 0.3,
    confidence: float = 0.95,
) -> dict[str, Any] | pd.DataFrame:
    """Summarise a score column: mean, median, genes above a threshold and a t-interval of the mean.

    Works on the per-gene table of :func:`evaluate` (``column="pearson"``) and equally on per-section or
    per-fold results (e.g. a column of mean PCCs, one row per fold). NaN scores are left out.

    Parameters
    ----------
    df
        Table of scores.
    column
        The column to summarise.
    by
        Column(s) to group by (e.g. ``"method"``, ``"fold"``); one summary row per group.
    threshold
        Count the scores strictly above it (``n_above``, ``frac_above``); 0.3 is the usual "well predicted" PCC.
    confidence
        Level of the two-sided t-interval of the mean over rows (``ci_low``, ``ci_high``; NaN with fewer than two
        finite scores).

    Returns
    -------
    Without ``by``: a dict with ``column``, ``n``, ``mean``, ``median``, ``std``, ``ci_low``, ``ci_high``,
    ``n_above``, ``frac_above``, ``threshold``, ``confidence``. With ``by``: a DataFrame with those columns,
    one row per group.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"`df` must be a pandas DataFrame, got {type(df).__name__}.")
    if column not in df.columns:
        raise KeyError(f"`column`={column!r} is not a column of `df` (it has {list(df.columns)}).")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be between 0 and 1, got {confidence!r}.")
    values = pd.to_numeric(df[column], errors="coerce")
    if by is None:
        return {
            "column": column,
            **_summary(values.to_numpy(float), threshold=threshold, confidence=confidence),
        }
    keys = [by] if isinstance(by, str) else list(by)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise KeyError(f"`by`: {missing} not among the columns of `df` ({list(df.columns)}).")
    rows = []
    for name, part in df.assign(**{column: values}).groupby(keys, sort=True, observed=True):
        name = name if isinstance(name, tuple) else (name,)
        summ = _summary(part[column].to_numpy(float), threshold=threshold, confidence=confidence)
        rows.append({**dict(zip(keys, name, strict=True)), **summ})
    return pd.DataFrame(rows)
