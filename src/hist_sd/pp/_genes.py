"""Spatially variable genes shared by many sections (HiST's Moran's I rule)."""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from hist_sd import _constants as C
from hist_sd._core._data import as_sections, get_table, match_genes
from hist_sd._core._expr import in_tissue_mask, is_counts, log_normalize
from hist_sd._core._params import check_key_free, input_keys, log_written, store_params
from hist_sd._core._runtime import progress as _progress
from hist_sd._docs import doc_params

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    if not pats:
        return None
    try:
        return re.compile("|".join(f"(?:{p})" for p in pats), flags=re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"`exclude` has an invalid regular expression: {err}.") from err


def _source(adata: AnnData, layer: str | None) -> Any:
    if layer is None:
        if adata.X is None:
            raise ValueError("The table has no `.X`; pass `layer=`.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"`layer`={layer!r} is not a layer of the table; it has {list(adata.layers)}.")
    return adata.layers[layer]


def _min_spots(min_cells: float, n: int) -> float:
    return min_cells * n if min_cells < 1 else float(min_cells)


def _moran(coords: np.ndarray, expr: Any, genes: Sequence[str], n_neighs: int) -> pd.DataFrame:
    """Moran's I with analytic p-values (squidpy) on a kNN graph of ``coords``."""
    import squidpy as sq

    tmp = AnnData(X=expr, obsm={C.SPATIAL: np.asarray(coords, dtype=np.float64)})
    tmp.var_names = pd.Index(genes)
    sd_logger = logging.getLogger("spatialdata._logging")  # squidpy logs one INFO line per graph through it
    level = sd_logger.level
    sd_logger.setLevel(max(level, logging.WARNING))
    try:
        res = _moran_quiet(sq, tmp, n_neighs)
    finally:
        sd_logger.setLevel(level)
    return res.reindex(pd.Index(genes))


def _moran_quiet(sq: Any, tmp: AnnData, n_neighs: int) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sq.gr.spatial_neighbors(tmp, coord_type="generic", n_neighs=n_neighs, spatial_key=C.SPATIAL)
        return sq.gr.spatial_autocorr(
            tmp, mode="moran", n_perms=None, copy=True, show_progress_bar=False, corr_method="fdr_bh"
        )


@doc_params
def spatial_genes(
    datas: AnnData | SpatialData | Sequence[AnnData | SpatialData] | Mapping[str, AnnData | SpatialData],
    *,
    min_moran: float = 0.4,
    max_pval: float = 0.01,
    fdr: bool = False,
    n_neighs: int = 15,
    exclude: Sequence[str] = ("^MT-", "^RP[SL]"),
    always: Sequence[str] = (),
    n_top: int | None = None,
    min_cells: float = 0.1,
    min_sections: float = 1.0,
    layer: str | None = None,
    table_key: str | None = None,
    key_added: str = "spatial_genes",
    overwrite: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Select genes with a spatial pattern in every section (HiST's rule on Moran's I).

    For each section, Moran's I of every candidate gene is computed on a ``n_neighs``-nearest-neighbour graph of
    the in-tissue spots (``obsm["spatial"]``) with analytic p-values under the normality assumption (squidpy,
    no permutations). Candidates are the genes present in every section and detected in at least ``min_cells``
    spots of each. A gene is selected when it is significant (``p <= max_pval`` and ``I > 0``) in every section
    (or in ``min_sections`` of them) and its median I over the sections exceeds ``min_moran``, unless it
    matches ``exclude``; ``always`` genes are added regardless.

    Parameters
    ----------
    datas
        One section, or a list or dict of sections (AnnData or SpatialData).
    min_moran
        Threshold on the median Moran's I over sections (HiST: 0.4).
    max_pval
        Significance level each section must reach.
    fdr
        Use Benjamini-Hochberg adjusted p-values (per section) instead of raw p-values (HiST uses raw ones).
    n_neighs
        Neighbours of the spatial kNN graph (HiST: 15).
    exclude
        Regular expressions (case-insensitive) of genes never selected by the rule (mitochondrial and
        ribosomal protein genes by default).
    always
        Genes selected whatever their score (e.g. lineage markers); each must be present in every section.
    n_top
        Keep at most this many genes selected by the rule (best median I first); ``always`` genes come on top.
    min_cells
        Minimum fraction (``< 1``) or number (``>= 1``) of spots detecting a gene, in every section.
    min_sections
        Fraction (``<= 1``) or number (``> 1``) of sections in which a gene must be significant; HiST's rule
        (``1.0``) asks for all of them, which few genes meet over many noisy legacy ST sections.
    layer
        Expression layer (default ``.X``). Raw counts are log-normalised on the fly
        (``log1p(x / total * 1e4)``); the data themselves are never changed.
    %(tables_key)s
    key_added
        ``var[key_added]`` (bool) marks the selected genes on every table; ``var["moran_I"]`` and
        ``var["moran_pval"]`` hold each section's statistics (NaN for genes not tested);
        ``uns[key_added]`` keeps the parameters and the gene list.
    overwrite
        Replace those keys when they exist.
    progress
        Show a progress bar over sections.

    Returns
    -------
    DataFrame indexed by candidate gene, sorted by decreasing ``median_moran``, with columns
    ``median_moran``, ``min_moran``, ``n_sections`` (sections where the gene is significant),
    ``moran_I_<section>`` for each section and ``selected``.
    """
    sections = as_sections(datas)
    _check_spatial_genes_args(
        max_pval=max_pval, n_neighs=n_neighs, n_top=n_top, min_cells=min_cells, min_sections=min_sections
    )
    always = [always] if isinstance(always, str) else list(always)
    excl = _compile(exclude)

    tables = {name: get_table(d, table_key) for name, d in sections.items()}
    _check_tables(tables, key_added, overwrite=overwrite)
    common = _common_genes(tables, always)
    cand, spots = _candidates(tables, common, always, layer=layer, min_cells=min_cells)
    logger.info("Moran's I of %d genes in %d sections", len(cand), len(tables))

    moran_i, pvals = _moran_tables(
        tables, spots, cand, layer=layer, n_neighs=n_neighs, fdr=fdr, progress=progress
    )
    df = _select(
        moran_i,
        pvals,
        max_pval=max_pval,
        min_moran=min_moran,
        min_sections=min_sections,
        excl=excl,
        n_top=n_top,
        always=always,
    )
    genes = list(df.index[df["selected"].to_numpy()])

    params = {
        "min_moran": float(min_moran),
        "max_pval": float(max_pval),
        "fdr": bool(fdr),
        "n_neighs": int(n_neighs),
        "exclude": list(exclude) if not isinstance(exclude, str) else [exclude],
        "always": always,
        "n_top": n_top,
        "min_cells": float(min_cells),
        "min_sections": float(min_sections),
        "layer": layer,
        "sections": list(tables),
    }
    _write_spatial_genes(tables, moran_i, pvals, key_added, params=params, genes=genes, overwrite=overwrite)
    logger.info("%d spatially variable genes selected from %d candidates", len(genes), len(cand))
    return df


def _check_spatial_genes_args(
    *, max_pval: float, n_neighs: int, n_top: int | None, min_cells: float, min_sections: float
) -> None:
    """Check the numeric arguments of :func:`spatial_genes`."""
    if not 0 < max_pval <= 1:
        raise ValueError(f"`max_pval` must be in (0, 1], got {max_pval!r}.")
    if not isinstance(n_neighs, int | np.integer) or n_neighs < 1:
        raise ValueError(f"`n_neighs` must be a positive integer, got {n_neighs!r}.")
    if n_top is not None and (not isinstance(n_top, int | np.integer) or n_top < 1):
        raise ValueError(f"`n_top` must be a positive integer or None, got {n_top!r}.")
    if min_cells < 0:
        raise ValueError(f"`min_cells` must be a fraction in [0, 1) or a number of spots >= 1, got {min_cells!r}.")
    if min_sections <= 0:
        raise ValueError(f"`min_sections` must be a fraction in (0, 1] or a number of sections, got {min_sections!r}.")


def _check_tables(tables: dict[str, AnnData], key_added: str, *, overwrite: bool) -> None:
    """Check that every table has spot coordinates, unique gene names and free output keys."""
    for name, t in tables.items():
        if C.SPATIAL not in t.obsm:
            raise KeyError(f"Section {name!r} has no `obsm[{C.SPATIAL!r}]` spot coordinates.")
        if not t.var_names.is_unique:
            raise ValueError(f"Section {name!r} has duplicated gene names; run `var_names_make_unique()` first.")
        for key in ("moran_I", "moran_pval", key_added):
            check_key_free(t.var, key, "var", overwrite=overwrite)
        check_key_free(t.uns, key_added, "uns", overwrite=overwrite, protected=input_keys(t, "uns"))


def _common_genes(tables: dict[str, AnnData], always: list[str]) -> pd.Index:
    """Genes present in every section, in the first section's order (``always`` must be among them)."""
    names = list(tables)
    common = pd.Index(tables[names[0]].var_names)
    for name in names[1:]:
        common = common[common.isin(tables[name].var_names)]
    if common.has_duplicates:
        common = common.drop_duplicates()
    if len(common) == 0:
        raise ValueError("The sections have no gene in common.")
    match_genes(common, always, what="always")
    return common


def _candidates(
    tables: dict[str, AnnData], common: pd.Index, always: list[str], *, layer: str | None, min_cells: float
) -> tuple[pd.Index, dict[str, np.ndarray]]:
    """Common genes detected in enough spots of every section (or ``always``); the in-tissue spots."""
    keep = np.ones(len(common), dtype=bool)
    cols: dict[str, np.ndarray] = {}
    spots: dict[str, np.ndarray] = {}
    for name, t in tables.items():
        spots[name] = in_tissue_mask(t)
        cols[name] = t.var_names.get_indexer(common)
        mat = _source(t, layer)
        sub = mat[spots[name]][:, cols[name]]
        detected = np.asarray((sub > 0).sum(axis=0)).ravel()
        keep &= detected >= _min_spots(min_cells, int(spots[name].sum()))
    keep |= common.isin(always)
    cand = common[keep]
    if len(cand) == 0:
        raise ValueError(f"No gene is detected in `min_cells`={min_cells} spots of every section.")
    return cand, spots


def _moran_tables(
    tables: dict[str, AnnData],
    spots: dict[str, np.ndarray],
    cand: pd.Index,
    *,
    layer: str | None,
    n_neighs: int,
    fdr: bool,
    progress: bool,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Moran's I and its p-values (genes x sections) of the candidates over each section's in-tissue spots."""
    names = list(tables)
    moran_i = pd.DataFrame(index=cand, columns=names, dtype=float)
    pvals = pd.DataFrame(index=cand, columns=names, dtype=float)
    pcol = "pval_norm_fdr_bh" if fdr else "pval_norm"
    for name in _progress(names, enabled=progress, desc="Moran's I"):
        t = tables[name]
        mask = spots[name]
        if mask.sum() <= n_neighs:
            raise ValueError(f"Section {name!r} has {int(mask.sum())} spots; Moran's I needs more than `n_neighs`.")
        mat = _source(t, layer)[mask]
        gcols = t.var_names.get_indexer(cand)
        if is_counts(mat):
            expr = log_normalize(sparse.csr_matrix(mat), gcols, dtype=np.float32)
        else:
            expr = sparse.csr_matrix(mat[:, gcols], dtype=np.float32)
        res = _moran(np.asarray(t.obsm[C.SPATIAL])[mask], expr, list(cand), int(n_neighs))
        moran_i[name] = res["I"].to_numpy(dtype=float)
        pvals[name] = res[pcol].to_numpy(dtype=float)
    return moran_i, pvals


def _select(
    moran_i: pd.DataFrame,
    pvals: pd.DataFrame,
    *,
    max_pval: float,
    min_moran: float,
    min_sections: float,
    excl: re.Pattern[str] | None,
    n_top: int | None,
    always: list[str],
) -> pd.DataFrame:
    """The result table: per-gene summaries of Moran's I over sections, sorted, with ``selected`` genes."""
    cand = moran_i.index
    names = list(moran_i.columns)
    sig = (pvals <= max_pval) & (moran_i > 0)
    df = pd.DataFrame(
        {
            "median_moran": moran_i.median(axis=1, skipna=False),
            "min_moran": moran_i.min(axis=1, skipna=False),
            "n_sections": sig.sum(axis=1).astype(int),
        },
        index=cand,
    )
    for name in names:
        df[f"moran_I_{name}"] = moran_i[name]
    need = math.ceil(min_sections * len(names) - 1e-9) if min_sections <= 1 else math.ceil(min_sections)
    passing = (df["n_sections"] >= min(max(need, 1), len(names))) & (df["median_moran"] > min_moran)
    if excl is not None:
        passing &= ~pd.Series([bool(excl.search(g)) for g in cand], index=cand)
    df = df.sort_values("median_moran", ascending=False, na_position="last", kind="stable")
    passing = passing.reindex(df.index)
    chosen = df.index[passing.to_numpy()]
    if n_top is not None:
        chosen = chosen[:n_top]
    df["selected"] = df.index.isin(chosen) | df.index.isin(always)
    df.index.name = "gene"
    return df


def _write_spatial_genes(
    tables: dict[str, AnnData],
    moran_i: pd.DataFrame,
    pvals: pd.DataFrame,
    key_added: str,
    *,
    params: dict[str, Any],
    genes: list[str],
    overwrite: bool,
) -> None:
    """Write each section's Moran's I, p-values and selection to ``var``, the parameters to ``uns``."""
    for name, t in tables.items():
        t.var["moran_I"] = moran_i[name].reindex(t.var_names).to_numpy(dtype=float)
        t.var["moran_pval"] = pvals[name].reindex(t.var_names).to_numpy(dtype=float)
        t.var[key_added] = t.var_names.isin(genes)
        if key_added in t.uns and overwrite:
            del t.uns[key_added]
        store_params(t, key_added, params, genes=genes)
    log_written("var", "moran_I", "moran_pval", key_added)
    log_written("uns", key_added)
