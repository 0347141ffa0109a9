"""Per-gene agreement between predicted and measured expression (the HEST-benchmark metrics)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from hist_sd import _constants as C
from hist_sd._utils import check_key_free, log_written, resolve, store_params

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

#: Target sum of the count normalisation the models are trained on (``log1p(normalize_total(1e4))``).
TARGET_SUM = 1e4
#: Label of values log-normalised from raw counts here.
LOGNORM_LABEL = "log1p(CP10k)"

__all__ = ["evaluate", "summarize_scores"]


# --------------------------------------------------------------------------------------------------------------
# Shared accessors (also used by hist_sd.pl)
# --------------------------------------------------------------------------------------------------------------
def prediction_matrix(adata: AnnData, pred_key: str) -> tuple[np.ndarray, list[str]]:
    """Predictions ``obsm[pred_key]`` as a float ``(n_spots, n_genes)`` array and their gene names.

    The genes are the columns of a DataFrame in ``obsm``, else ``uns[pred_key]["genes"]``.
    """
    if not isinstance(pred_key, str):
        raise TypeError(f"`pred_key` must be a string naming an `obsm` entry, got {type(pred_key).__name__}.")
    if pred_key not in adata.obsm:
        raise KeyError(
            f"`pred_key`={pred_key!r} is not in `obsm` (it has {sorted(adata.obsm)}). "
            "Run `hs.tl.predict` first or pass the key the predictions were written to."
        )
    pred = adata.obsm[pred_key]
    if isinstance(pred, pd.DataFrame):
        genes = [str(g) for g in pred.columns]
        values = pred.to_numpy(dtype=np.float64)
    else:
        values = pred.toarray() if sparse.issparse(pred) else np.asarray(pred)
        values = values.astype(np.float64, copy=False)
        entry = adata.uns.get(pred_key)
        raw = entry.get("genes") if isinstance(entry, Mapping) else None
        if raw is None:
            raise KeyError(
                f"`obsm[{pred_key!r}]` is an array, so its gene names must be in `uns[{pred_key!r}]['genes']`, "
                "which is missing. Store them there or put a DataFrame with gene columns in `obsm`."
            )
        genes = [str(g) for g in np.asarray(raw).ravel()]
    if values.ndim != 2 or values.shape[1] != len(genes):
        raise ValueError(
            f"`obsm[{pred_key!r}]` has shape {values.shape} but {len(genes)} gene names; they must match."
        )
    if len(set(genes)) != len(genes):
        raise ValueError(f"The gene names of `obsm[{pred_key!r}]` are not unique.")
    return values, genes


def looks_like_counts(x: Any, *, n_check: int = 100_000) -> bool:
    """Whether a matrix holds non-negative integers (checked on up to ``n_check`` stored values)."""
    vals = x.data if sparse.issparse(x) else np.asarray(x).ravel()
    if vals.size == 0:
        return True
    vals = np.asarray(vals[:n_check], dtype=np.float64)
    if not np.isfinite(vals).all():
        return False
    return bool((vals >= 0).all() and np.array_equal(vals, np.round(vals)))


def measured_matrix(
    adata: AnnData,
    genes: Sequence[str],
    *,
    layer: str | None = None,
    normalize: bool | None = None,
) -> tuple[np.ndarray, str]:
    """Measured expression of ``genes`` as a float ``(n_spots, len(genes))`` array, and a label of its scale.

    From ``layers[layer]`` or ``.X``; with ``normalize=None`` raw counts in ``.X`` (integers) are turned into
    ``log1p`` of counts per 10,000 (library size over all genes of the table); ``True`` always does so,
    ``False`` never.
    """
    if layer is not None:
        if layer not in adata.layers:
            raise KeyError(f"`layer`={layer!r} is not in `layers` (it has {sorted(adata.layers)}).")
        x = adata.layers[layer]
        label = layer
    else:
        if adata.X is None:
            raise ValueError("The table has no `.X`; pass `layer=` with the measured expression.")
        x = adata.X
        label = "X"
    var = pd.Index(adata.var_names.astype(str))
    missing = [g for g in genes if g not in var]
    if missing:
        shown = ", ".join(repr(g) for g in missing[:10]) + (" …" if len(missing) > 10 else "")
        raise KeyError(f"`genes`: {len(missing)} gene(s) are not in the table's `var_names`: {shown}.")
    if not var.is_unique:
        raise ValueError("The table's `var_names` are not unique; run `adata.var_names_make_unique()`.")
    idx = var.get_indexer(list(genes))
    do_norm = (layer is None and looks_like_counts(x)) if normalize is None else bool(normalize)
    sub = x[:, idx]
    sub = sub.toarray() if sparse.issparse(sub) else np.asarray(sub)
    sub = sub.astype(np.float64, copy=False)
    if do_norm:
        totals = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(totals > 0, TARGET_SUM / totals, 0.0)
        sub = np.log1p(sub * factor[:, None])
        label = LOGNORM_LABEL
    return sub, label


def _tissue_mask(adata: AnnData, in_tissue_only: bool) -> np.ndarray:
    mask = np.ones(adata.n_obs, dtype=bool)
    if in_tissue_only and "in_tissue" in adata.obs:
        mask = pd.to_numeric(adata.obs["in_tissue"], errors="coerce").fillna(0).to_numpy() != 0
    if not mask.any():
        raise ValueError("No spot is in tissue (`obs['in_tissue']`); pass `in_tissue_only=False`.")
    return mask


# --------------------------------------------------------------------------------------------------------------
# Correlations
# --------------------------------------------------------------------------------------------------------------
def _pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
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


def _rank_columns(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=0, method="average") if a.size else a


def correlate(pred: np.ndarray, meas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column Pearson and Spearman r of two ``(n, g)`` arrays and the number of spots used per column.

    Spots where either value is not finite are left out of that column only.
    """
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
        pearson[full] = _pearson_columns(p, m)
        spearman[full] = _pearson_columns(_rank_columns(p), _rank_columns(m))
    for j in np.flatnonzero(~full):
        keep = finite[:, j]
        p, m = pred[keep, j : j + 1], meas[keep, j : j + 1]
        pearson[j] = _pearson_columns(p, m)[0]
        spearman[j] = _pearson_columns(_rank_columns(p), _rank_columns(m))[0]
    return pearson, spearman, n_spots


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------
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
        genes, then ``sc.pp.log1p``). Already normalised ``.X`` is used as it is.
    table_key
        Table of a SpatialData (default ``"table"``).
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
        check_key_free(adata.uns, key_added, "uns", overwrite=overwrite)
    values, pred_genes = prediction_matrix(adata, pred_key)
    var = set(adata.var_names.astype(str))
    if genes is None:
        use = [g for g in pred_genes if g in var]
        if len(use) < len(pred_genes):
            logger.warning(
                "%d of %d predicted genes are not measured in the table and are not scored.",
                len(pred_genes) - len(use),
                len(pred_genes),
            )
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
    mask = _tissue_mask(adata, in_tissue_only)
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
    from scipy import stats

    v = values[np.isfinite(values)]
    n = int(v.size)
    mean = float(v.mean()) if n else float("nan")
    std = float(v.std(ddof=1)) if n > 1 else float("nan")
    if n > 1:
        half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * std / np.sqrt(n)
        lo, hi = float(mean - half), float(mean + half)
    else:
        lo = hi = float("nan")
    n_above = int((v > threshold).sum())
    return {
        "n": n,
        "mean": mean,
        "median": float(np.median(v)) if n else float("nan"),
        "std": std,
        "ci_low": lo,
        "ci_high": hi,
        "n_above": n_above,
        "frac_above": n_above / n if n else float("nan"),
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
