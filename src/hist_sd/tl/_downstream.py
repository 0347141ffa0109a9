"""What every downstream verb reads: predicted (``key=``) or measured (``key=None``) expression as one AnnData.

Predictions come through the one accessor (:func:`hist_sd.get._accessors.prediction_matrix`); measured expression
is the table's raw counts log-normalised exactly like the models' targets (``log1p`` counts per 10,000, the
library size over every gene), or ``X`` as it is when scanpy's ``uns["log1p"]`` marks it normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from hist_sd._core._expr import (
    KINDS,
    LOGNORM_LABEL,
    classify,
    counts_matrix,
    in_tissue_mask,
    is_counts,
    log_normalize,
)
from hist_sd.get._accessors import prediction_matrix

__all__ = ["expression_table", "key_label"]


def key_label(key: str | None) -> str:
    """How the input is named in logs and ``params``: ``obsm[key]`` or the measured expression."""
    return "measured" if key is None else f"obsm[{key!r}]"


def expression_table(
    adata: AnnData,
    key: str | None,
    *,
    genes: Sequence[str] | None = None,
    in_tissue_only: bool = True,
    obs: Sequence[str] = (),
) -> AnnData:
    """Predicted (``key``) or measured (``key=None``) expression of ``adata`` as a new AnnData (spots x genes).

    Parameters
    ----------
    adata
        The slide's table.
    key
        ``obsm`` key of predictions (genes in ``uns[key]["genes"]``), or ``None`` for the measured expression.
    genes
        Keep only these genes (in this order); all must be present.
    in_tissue_only
        Keep only in-tissue spots (``obs["in_tissue"]``).
    obs
        ``obs`` columns copied into the result.

    Returns
    -------
    ``X`` holds ``log1p`` counts per 10,000 (dense for predictions, CSR for measured counts); ``uns["source"]``
    names the input.
    """
    if key is None:
        x, names, label = _measured(adata)
    else:
        values, names = prediction_matrix(adata, key)
        x, label = values, f"obsm[{key!r}]"
    var = pd.Index(names, dtype=str)
    if genes is not None:
        genes = [str(g) for g in genes]
        missing = [g for g in genes if g not in var]
        if missing:
            what = "measured in the table" if key is None else f"predicted in `obsm[{key!r}]`"
            raise KeyError(f"`genes`: {len(missing)} gene(s) are not {what}, e.g. {missing[:5]}.")
        idx = var.get_indexer(genes)
        x = x[:, idx]
        var = pd.Index(genes, dtype=str)
    mask = in_tissue_mask(adata) if in_tissue_only else np.ones(adata.n_obs, dtype=bool)
    if not mask.any():
        raise ValueError("No spot is in tissue (`obs['in_tissue']`); pass `in_tissue_only=False`.")
    missing_obs = [c for c in obs if c not in adata.obs.columns]
    if missing_obs:
        raise KeyError(f"{missing_obs} are not `obs` columns; the table has {list(adata.obs.columns)}.")
    work = AnnData(
        X=x[mask] if sparse.issparse(x) else np.asarray(x)[mask],
        obs=adata.obs.loc[mask, list(obs)].copy() if obs else pd.DataFrame(index=adata.obs_names[mask].copy()),
        var=pd.DataFrame(index=var),
    )
    work.uns["source"] = label
    return work


def _measured(adata: AnnData) -> tuple[Any, list[str], str]:
    """Measured expression on the models' scale: log-normalised raw counts, or ``X`` marked log1p."""
    x, where = counts_matrix(adata, require=False)
    if is_counts(x):
        return log_normalize(x), [str(g) for g in adata.var_names], f"measured ({LOGNORM_LABEL} of {where})"
    kind = classify(adata.X, adata.uns)
    if kind == "log1p":
        x = adata.X
        x = sparse.csr_matrix(x, dtype=np.float64) if sparse.issparse(x) else np.asarray(x, dtype=np.float64)
        return x, [str(g) for g in adata.var_names], "measured (X, log1p)"
    raise ValueError(
        f"`key=None` analyses the measured expression, but `{where}` holds {KINDS[classify(x, adata.uns)]}: put raw "
        "counts in `X` or `layers['counts']` (or log-normalised values in `X` with scanpy's `uns['log1p']`)."
    )


def dense(x: Any) -> np.ndarray:
    """A float64 NumPy array of a dense or sparse matrix."""
    return x.toarray().astype(np.float64) if sparse.issparse(x) else np.asarray(x, dtype=np.float64)
