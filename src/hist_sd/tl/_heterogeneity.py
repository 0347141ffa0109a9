"""Tumour heterogeneity (HiST's recipe): sub-clusters of tumour spots from their (predicted) expression."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._core._data import resolve
from hist_sd._core._params import check_key_free, input_keys, log_written, store_params
from hist_sd._core._runtime import set_seed
from hist_sd._docs import doc_params
from hist_sd.tl._downstream import dense, expression_table, key_label

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

__all__ = ["heterogeneity", "tumor_mask"]

#: Fewer tumour spots than this cannot be sub-clustered.
MIN_TUMOR_SPOTS = 20
#: Fewer genes than this cannot be sub-clustered.
MIN_GENES = 20


@doc_params
def heterogeneity(
    data: AnnData | SpatialData,
    *,
    key: str | None = C.PRED,
    tumor_key: str = C.TUMOR,
    genes: Sequence[str] | None = None,
    n_top_genes: int = 500,
    n_pcs: int = 15,
    n_neighbors: int = 15,
    resolution: float = 0.4,
    key_added: str = "hist_subcluster",
    seed: int = 0,
    table_key: str | None = None,
    overwrite: bool = False,
) -> None:
    """Sub-cluster the tumour spots of a slide: highly variable genes, PCA, neighbours, Leiden.

    HiST's recipe on predicted expression (``log1p`` counts per 10,000): the ``n_top_genes`` most variable genes
    of the tumour spots (:func:`scanpy.pp.highly_variable_genes`, Seurat flavour), their first ``n_pcs``
    principal components, a ``n_neighbors`` graph and Leiden communities at ``resolution``.

    Parameters
    ----------
    data
        One slide.
    %(key)s
    tumor_key
        ``obs`` column marking tumour spots: boolean (``hs.tl.tumor_labels`` writes ``"tumor"``) or a tumour
        probability (``"hist_tumor"`` of a tumour model; spots >= 0.5 are tumour).
    genes
        Only these genes (e.g. the predicted panel, to cluster measured expression on the same genes).
    n_top_genes
        Highly variable genes kept (all genes when there are fewer).
    n_pcs
        Principal components.
    n_neighbors
        Neighbours of the kNN graph.
    resolution
        Leiden resolution.
    key_added
        Sub-clusters go to ``obs[key_added]`` (categorical, missing outside the tumour), the parameters, the
        genes used and the cluster sizes to ``uns[key_added]``.
    %(seed)s
    %(table_key)s
    overwrite
        Replace existing results under ``key_added``.

    Returns
    -------
    Nothing; writes ``obs[key_added]`` and ``uns[key_added]``. Draw it with
    ``hs.pl.spatial(data, obs=key_added)``.
    """
    import scanpy as sc

    _, adata = resolve(data, table_key)
    check_key_free(adata.obs, key_added, "obs", overwrite=overwrite, protected=input_keys(adata, "obs"))
    check_key_free(adata.uns, key_added, "uns", overwrite=overwrite, protected=input_keys(adata, "uns"))
    for name, value, low in (("n_top_genes", n_top_genes, 2), ("n_pcs", n_pcs, 2), ("n_neighbors", n_neighbors, 2)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
    if not float(resolution) > 0:
        raise ValueError(f"`resolution` must be positive, got {resolution!r}.")
    tumour = tumor_mask(adata, tumor_key)
    work = expression_table(adata, key, genes=genes, in_tissue_only=True)
    work = work[tumour[adata.obs_names.get_indexer(work.obs_names)]].copy()
    if work.n_obs < MIN_TUMOR_SPOTS:
        raise ValueError(f"{work.n_obs} in-tissue tumour spots in `obs[{tumor_key!r}]`; sub-clustering needs at least "
                         f"{MIN_TUMOR_SPOTS}.")
    work.X = dense(work.X)
    work = work[:, work.X.std(axis=0) > 0].copy()
    if work.n_vars < MIN_GENES:
        raise ValueError(f"{work.n_vars} genes vary over the tumour spots of {key_label(key)}; sub-clustering needs at "
                         f"least {MIN_GENES}.")
    set_seed(seed)
    if work.n_vars > n_top_genes:
        sc.pp.highly_variable_genes(work, n_top_genes=n_top_genes, flavor="seurat")
        work = work[:, work.var["highly_variable"].to_numpy()].copy()
    n_comps = int(min(n_pcs, work.n_vars - 1, work.n_obs - 1))
    sc.pp.pca(work, n_comps=n_comps, random_state=seed)
    sc.pp.neighbors(work, n_neighbors=min(n_neighbors, work.n_obs - 1), n_pcs=n_comps, random_state=seed)
    sc.tl.leiden(work, resolution=float(resolution), flavor="igraph", n_iterations=2, directed=False,
                 random_state=seed, key_added="cluster")
    clusters = work.obs["cluster"].astype(str)
    cats = sorted(pd.unique(clusters), key=int)
    labels = pd.Series(pd.NA, index=adata.obs_names, dtype=object)
    labels.loc[work.obs_names] = clusters.to_numpy()
    adata.obs[key_added] = pd.Categorical(labels.to_numpy(), categories=cats)
    adata.uns.pop(key_added, None)
    store_params(
        adata, key_added,
        {"key": key_label(key), "tumor_key": tumor_key, "n_top_genes": n_top_genes, "n_pcs": n_comps,
         "n_neighbors": n_neighbors, "resolution": float(resolution), "seed": seed},
        genes=[str(g) for g in work.var_names], n_tumor_spots=int(work.n_obs),
        cluster_sizes=clusters.value_counts().reindex(cats).to_numpy(dtype=int),
    )
    logger.info("heterogeneity: %d sub-clusters of %d tumour spots from %d genes of %s.", len(cats), work.n_obs,
                work.n_vars, key_label(key))
    log_written("obs", key_added)
    log_written("uns", key_added)


def tumor_mask(adata: AnnData, tumor_key: str) -> np.ndarray:
    """Tumour spots of ``obs[tumor_key]``: a boolean column, or a probability ``>= 0.5`` (missing: not tumour)."""
    if tumor_key not in adata.obs.columns:
        raise KeyError(
            f"`tumor_key`={tumor_key!r} is not an `obs` column; label tumour spots first (`hs.tl.tumor_labels` "
            f"writes {C.TUMOR!r}, a tumour model's `hs.tl.predict` writes {C.TUMOR_PRED!r})."
        )
    col = adata.obs[tumor_key]
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=bool)
    values = pd.to_numeric(col, errors="coerce")
    if values.notna().sum() == 0:
        raise ValueError(f"`obs[{tumor_key!r}]` must be boolean or a tumour probability, got {col.dtype}.")
    return np.nan_to_num(values.to_numpy(dtype=float), nan=0.0) >= 0.5
