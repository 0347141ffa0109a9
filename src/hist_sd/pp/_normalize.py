"""Expression normalisation that keeps the raw counts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from anndata import AnnData
from scipy import sparse

from hist_sd._core._data import resolve
from hist_sd._core._expr import is_counts, log_normalize
from hist_sd._core._params import log_written, store_params
from hist_sd._docs import doc_params

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

NORMALIZE_KEY = "normalize"
_METHODS = ("log1p", "clr")


def _clr_genes(counts: Any) -> np.ndarray | sparse.csr_matrix:
    """Seurat's CLR across spots, per gene: ``log1p(x / exp(sum(log1p(x[x > 0])) / n_spots))``."""
    n = max(counts.shape[0], 1)
    if sparse.issparse(counts):
        x = sparse.csr_matrix(counts, dtype=np.float64)
        x.eliminate_zeros()
        # log1p(0) = 0: zeros add nothing to the sum and stay zero after the transform
        geo = np.exp(np.asarray(x.log1p().sum(axis=0)).ravel() / n)
        x.data = np.log1p(x.data / geo[x.indices])
        return x.astype(np.float32)
    x = np.asarray(counts, dtype=np.float64)
    geo = np.exp(np.log1p(x).sum(axis=0) / n)
    return np.log1p(x / geo[None, :]).astype(np.float32)


@doc_params
def normalize(
    data: AnnData | SpatialData,
    *,
    method: Literal["log1p", "clr"] = "log1p",
    target_sum: float = 1e4,
    counts_layer: str = "counts",
    table_key: str | None = None,
    key_added: str = NORMALIZE_KEY,
    overwrite: bool = False,
    inplace: bool = True,
) -> AnnData | None:
    """Log-normalise expression, keeping the raw counts in a layer.

    Parameters
    ----------
    data
        AnnData or SpatialData whose table holds raw counts in ``.X`` (or already in ``layers[counts_layer]``).
    method
        ``"log1p"``: ``log1p(x / total * target_sum)`` per spot (scanpy's ``normalize_total`` + ``log1p``;
        Seurat's ``LogNormalize``, which HiST uses). ``"clr"``: Seurat's centred log ratio across spots for each
        gene, ``log1p(x_ij / exp(sum_i log1p(x_ij) / n_spots))`` (``NormalizeData(normalization.method="CLR",
        margin=1)``). Seurat's ``LogVMR`` is a per-gene dispersion statistic
        (``log(var(expm1(x)) / mean(expm1(x)))``) used to rank variable genes, not a normalisation, so it is
        not offered here.
    target_sum
        Counts per spot after scaling (``"log1p"`` only).
    counts_layer
        Layer that keeps the raw counts; written from ``.X`` on the first call and the source of every later
        normalisation.
    %(table_key)s
    key_added
        ``uns[key_added]["params"]`` records the method (and marks the table as normalised).
    overwrite
        Normalise again (from ``layers[counts_layer]``) a table that was already normalised.
    inplace
        Change the table; else return a normalised copy and leave ``data`` unchanged.

    Returns
    -------
    ``None`` when ``inplace``, else the normalised copy of the table.
    """
    _, adata = resolve(data, table_key)
    if method not in _METHODS:
        hint = " (Seurat's LogVMR ranks variable genes; it does not normalise: use 'log1p' or 'clr')"
        raise ValueError(
            f"`method` must be one of {', '.join(map(repr, _METHODS))}; got {method!r}"
            + (hint if str(method).lower() == "logvmr" else "")
            + "."
        )
    if not np.isfinite(target_sum) or target_sum <= 0:
        raise ValueError(f"`target_sum` must be a positive number, got {target_sum!r}.")
    if key_added in adata.uns and not overwrite:
        prev = adata.uns[key_added].get("params", {}) if isinstance(adata.uns[key_added], dict) else {}
        raise ValueError(
            f"The table was normalised already (`uns[{key_added!r}]`, method {prev.get('method', '?')!r}); "
            f"pass `overwrite=True` to normalise again from `layers[{counts_layer!r}]`."
        )

    if counts_layer in adata.layers:
        counts = adata.layers[counts_layer]
        if not is_counts(counts):
            raise ValueError(f"`layers[{counts_layer!r}]` does not hold raw counts (non-negative whole numbers).")
        wrote_counts = False
    else:
        if key_added in adata.uns:
            raise ValueError(
                f"The table was normalised (`uns[{key_added!r}]`) but `layers[{counts_layer!r}]` is gone; "
                "the raw counts cannot be recovered from `.X`."
            )
        if adata.X is None or not is_counts(adata.X):
            raise ValueError(
                "`.X` does not look like raw counts (non-negative whole numbers); put the counts in "
                f"`layers[{counts_layer!r}]` or pass the right `counts_layer`."
            )
        counts = adata.X
        wrote_counts = True

    target = adata.copy() if not inplace else adata
    counts = counts.copy()
    if wrote_counts:
        target.layers[counts_layer] = counts.copy()
    if method == "log1p":
        new_x = log_normalize(counts, target_sum=float(target_sum), dtype=np.float32)
    else:
        new_x = _clr_genes(counts)
    target.X = new_x
    target.uns["log1p"] = {"base": None}  # scanpy's marker of log-transformed data
    if key_added in target.uns:
        del target.uns[key_added]
    store_params(
        target, key_added, {"method": method, "target_sum": float(target_sum), "counts_layer": counts_layer}
    )
    if not inplace:
        return target
    if wrote_counts:
        log_written("layers", counts_layer)
    log_written("uns", key_added)
    logger.info("normalised X with %s", method)
    return None
