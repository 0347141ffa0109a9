"""Pseudo-bulk (HiST's pseudo-RNA-seq): mean expression per slide or region, and its agreement with bulk."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from hist_sd import _constants as C
from hist_sd._core._data import as_sections, resolve
from hist_sd._core._params import log_written, store_params
from hist_sd._docs import doc_params
from hist_sd.tl._downstream import expression_table, key_label

if TYPE_CHECKING:
    from spatialdata import SpatialData

    from hist_sd.model import HistModel

logger = logging.getLogger("hist_sd")

__all__ = ["evaluate_bulk", "pseudobulk"]

#: ``uns`` key of the returned AnnData's record.
PSEUDOBULK_KEY = "pseudobulk"


@doc_params
def pseudobulk(
    data: AnnData | SpatialData | Sequence[AnnData | SpatialData] | Mapping[str, AnnData | SpatialData],
    *,
    key: str | None = C.PRED,
    groupby: str | None = None,
    genes: Sequence[str] | None = None,
    min_spots: int = 1,
    in_tissue_only: bool = True,
    table_key: str | None = None,
) -> AnnData:
    """Mean expression of each slide (or of each region of it) as an AnnData of samples x genes.

    HiST's pseudo-RNA-seq: the mean over spots of ``log1p`` counts per 10,000, the scale the models are trained
    on, so a predicted and a measured pseudo-bulk are directly comparable (:func:`evaluate_bulk`).

    Parameters
    ----------
    data
        One slide, or several (a list, or a dict of section name -> slide).
    %(key)s
    groupby
        An ``obs`` column: one sample per slide and category (e.g. tumour / stroma regions); ``None``: one per
        slide.
    genes
        Only these genes; by default every gene of ``key`` (for several slides, the genes they share).
    min_spots
        Leave out samples averaging fewer spots.
    in_tissue_only
        Average in-tissue spots only (``obs["in_tissue"]``).
    %(table_key)s

    Returns
    -------
    AnnData with one row per sample (``obs``: ``section``, ``group`` with ``groupby``, ``n_spots``), the genes as
    ``var_names`` and ``uns["pseudobulk"]["params"]``. The input is not modified.
    """
    sections = as_sections(data)
    rows: list[np.ndarray] = []
    meta: list[dict[str, Any]] = []
    gene_index: pd.Index | None = None
    for name, d in sections.items():
        _, adata = resolve(d, table_key)
        work = expression_table(adata, key, genes=genes, in_tissue_only=in_tissue_only,
                                obs=[groupby] if groupby else ())
        gene_index = work.var_names if gene_index is None else gene_index.intersection(work.var_names, sort=False)
        labels = work.obs[groupby] if groupby else pd.Series("all", index=work.obs_names)
        for group in pd.unique(labels.dropna()):
            sel = (labels == group).to_numpy()
            if sel.sum() < min_spots:
                continue
            rows.append(pd.Series(np.asarray(work.X[sel].mean(axis=0)).ravel(), index=work.var_names))
            meta.append({"section": str(name), "group": str(group), "n_spots": int(sel.sum())})
    if not rows or gene_index is None or len(gene_index) == 0:
        raise ValueError(f"No sample with at least {min_spots} spot(s) and shared genes; nothing to average.")
    x = np.vstack([r.reindex(gene_index).to_numpy() for r in rows])
    obs = pd.DataFrame(meta)
    obs.index = [f"{m['section']}:{m['group']}" if groupby else m["section"] for m in meta]
    if not groupby:
        obs = obs.drop(columns="group")
    out = AnnData(X=x.astype(np.float64), obs=obs, var=pd.DataFrame(index=pd.Index(gene_index, dtype=str)))
    store_params(out, PSEUDOBULK_KEY, {"key": key_label(key), "groupby": groupby, "min_spots": min_spots,
                                       "in_tissue_only": in_tissue_only}, scale="log1p(CP10k), mean over spots")
    logger.info("pseudobulk: %d samples x %d genes from %s.", out.n_obs, out.n_vars, key_label(key))
    log_written("uns", PSEUDOBULK_KEY)
    return out


def evaluate_bulk(
    pred: AnnData | pd.DataFrame,
    truth: AnnData | pd.DataFrame,
    *,
    baseline: HistModel | pd.Series | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Per-sample Pearson and Spearman correlation across genes of a predicted and a measured bulk profile.

    Across-gene correlations of bulk profiles are dominated by the genes' mean levels: a constant profile of
    training means already scores high. Pass ``baseline`` (the trained model, whose ``target_mean`` is the
    training mean of each gene on the same scale, or a Series of per-gene means) to report that baseline
    beside the prediction, and the correlation of the two profiles' deviations from it (``pearson_delta``),
    which a prediction must get above 0 to claim more than the gene means.

    Parameters
    ----------
    pred, truth
        Samples x genes (AnnData from :func:`pseudobulk`, or DataFrames); matched by sample name and gene.
    baseline
        Per-gene training means (a :class:`~hist_sd.tl.HistModel` or a Series indexed by gene).

    Returns
    -------
    One row per shared sample: ``sample``, ``n_genes``, ``pearson``, ``spearman`` and, with ``baseline``,
    ``baseline_pearson``, ``baseline_spearman``, ``pearson_delta``.
    """
    p, t = _frame(pred, "pred"), _frame(truth, "truth")
    samples = p.index.intersection(t.index, sort=False)
    genes = p.columns.intersection(t.columns, sort=False)
    base = _baseline(baseline)
    if base is not None:
        genes = genes.intersection(base.index, sort=False)
    if len(samples) == 0:
        raise ValueError(f"`pred` and `truth` share no sample (e.g. {list(p.index[:3])} vs {list(t.index[:3])}).")
    if len(genes) < 3:
        raise ValueError(f"`pred` and `truth`{' and `baseline`' if base is not None else ''} share {len(genes)} "
                         "gene(s); a correlation across genes needs at least 3.")
    rows = []
    for s in samples:
        pv, tv = p.loc[s, genes].to_numpy(float), t.loc[s, genes].to_numpy(float)
        row: dict[str, Any] = {"sample": s, "n_genes": len(genes), "pearson": _r(pv, tv),
                               "spearman": _r(pv, tv, rank=True)}
        if base is not None:
            bv = base.loc[genes].to_numpy(float)
            row.update(baseline_pearson=_r(bv, tv), baseline_spearman=_r(bv, tv, rank=True),
                       pearson_delta=_r(pv - bv, tv - bv))
        rows.append(row)
    return pd.DataFrame(rows)


def _frame(x: AnnData | pd.DataFrame, what: str) -> pd.DataFrame:
    if isinstance(x, AnnData):
        return x.to_df()
    if isinstance(x, pd.DataFrame):
        return x
    raise TypeError(f"`{what}` must be an AnnData (from `hs.tl.pseudobulk`) or a DataFrame, got {type(x).__name__}.")


def _baseline(baseline: Any) -> pd.Series | None:
    if baseline is None:
        return None
    if hasattr(baseline, "target_mean") and hasattr(baseline, "genes"):
        return pd.Series(np.asarray(baseline.target_mean, dtype=float).ravel(), index=pd.Index(baseline.genes, dtype=str))
    if isinstance(baseline, Mapping):
        return pd.Series(dict(baseline), dtype=float)
    if isinstance(baseline, pd.Series):
        return baseline.astype(float)
    raise TypeError(f"`baseline` must be a HistModel, a Series or a dict of per-gene means, got {type(baseline).__name__}.")


def _r(a: np.ndarray, b: np.ndarray, *, rank: bool = False) -> float:
    if rank:
        a, b = stats.rankdata(a), stats.rankdata(b)
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
