"""Public accessors in the style of ``sc.get``: predictions, measured expression and scale as plain objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from hist_sd import _constants as C
from hist_sd._core._data import get_meta, get_mpp, resolve
from hist_sd._core._expr import measured_matrix
from hist_sd._docs import doc_params

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["expression", "prediction_matrix", "predictions", "scale"]


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


@doc_params
def predictions(data: AnnData | SpatialData, key: str = C.PRED, *, table_key: str | None = None) -> pd.DataFrame:
    """Predictions of :func:`hist_sd.tl.predict` as a DataFrame (spots x genes, indexed by ``obs_names``).

    Parameters
    ----------
    data
        The slide (AnnData, or a SpatialData holding the table).
    key
        ``obsm`` key of an expression prediction, or ``obs`` column of a tumour probability.
    %(table_key)s

    Returns
    -------
    A float DataFrame: one column per predicted gene (or one column named ``key``).

    Examples
    --------
    >>> import numpy as np, anndata as ad, hist_sd as hs
    >>> a = ad.AnnData(np.zeros((2, 1)), obsm={"hist_pred": np.ones((2, 2))}, uns={"hist_pred": {"genes": ["A", "B"]}})
    >>> list(hs.get.predictions(a).columns)
    ['A', 'B']
    """
    _, adata = resolve(data, table_key)
    if key not in adata.obsm and key in adata.obs:
        return adata.obs[[key]].astype(float)
    values, genes = prediction_matrix(adata, key)
    return pd.DataFrame(values, index=adata.obs_names.copy(), columns=pd.Index(genes))


@doc_params
def expression(
    data: AnnData | SpatialData,
    genes: str | Sequence[str],
    *,
    layer: str | None = None,
    table_key: str | None = None,
) -> pd.DataFrame:
    """Measured expression of ``genes`` on the scale the models predict (spots x genes DataFrame).

    Raw counts in ``.X`` become ``log1p`` of counts per 10,000 (library size over all genes); already normalised
    ``.X`` and any ``layers[layer]`` are returned as they are. ``df.attrs["scale"]`` names the scale.

    Parameters
    ----------
    data
        The slide.
    genes
        One gene or a list.
    layer
        Take ``layers[layer]`` as it is instead of ``.X``.
    %(table_key)s
    """
    _, adata = resolve(data, table_key)
    genes = [genes] if isinstance(genes, str) else [str(g) for g in genes]
    values, label = measured_matrix(adata, genes, layer=layer)
    df = pd.DataFrame(values, index=adata.obs_names.copy(), columns=pd.Index(genes))
    df.attrs["scale"] = label
    return df


@doc_params
def scale(data: AnnData | SpatialData, *, table_key: str | None = None) -> dict[str, Any]:
    """The physical scale recorded by the readers: ``mpp``, spot diameter and spacing (µm), technology, elements.

    Parameters
    ----------
    data
        The slide.
    %(table_key)s
    """
    _, adata = resolve(data, table_key)
    meta = dict(get_meta(adata))
    meta[C.MPP] = get_mpp(adata)
    return meta
