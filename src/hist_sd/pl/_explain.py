"""Grad-CAM panels (one per layer) of :func:`hist_sd.tl.explain`, over the H&E image."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hist_sd._core._data import resolve
from hist_sd._docs import doc_params

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from spatialdata import SpatialData

__all__ = ["explain"]


@doc_params
def explain(
    data: AnnData | SpatialData,
    *,
    key: str = "hist_gradcam",
    pred_key: str | None = "hist_pred",
    ncols: int = 4,
    cmap: str = "jet",
    table_key: str | None = None,
    **kwargs: Any,
) -> Figure | list[Axes] | None:
    """Draw the Grad-CAM maps :func:`hist_sd.tl.explain` wrote: the predicted gene, then one panel per layer.

    Parameters
    ----------
    data
        The slide (a SpatialData draws its H&E image under the spots).
    key
        The ``key_added`` of :func:`hist_sd.tl.explain`.
    pred_key
        Predictions (``obsm``) to draw the explained gene from in a first panel; ``None`` or a key the slide
        lacks draws the layer maps only.
    ncols
        Panels per row.
    cmap
        Colour map of the maps (Grad-CAM's customary ``"jet"``).
    %(table_key)s
    **kwargs
        Passed to :func:`hist_sd.pl.spatial` (``show``, ``save``, ``ax``, ``size``, ``alpha`` ...).

    Returns
    -------
    What :func:`hist_sd.pl.spatial` returns.
    """
    from hist_sd.pl._spatial import spatial

    _, adata = resolve(data, table_key)
    entry = adata.uns.get(key)
    if not isinstance(entry, dict) or "columns" not in entry or "params" not in entry:
        raise KeyError(f"`uns[{key!r}]` holds no Grad-CAM maps; run `hs.tl.explain(model, data, gene=..., "
                       f"key_added={key!r})` first.")
    gene = str(entry["params"]["gene"])
    layers = [str(v) for v in np.atleast_1d(entry["params"]["layer"])]
    cols = [str(c) for c in np.atleast_1d(entry["columns"])]
    missing = [c for c in cols if c not in adata.obs.columns]
    if missing:
        raise KeyError(f"The Grad-CAM columns {missing} are missing from `obs`; run `hs.tl.explain` again.")
    genes = [gene] if pred_key is not None and pred_key in adata.obsm else None
    titles = ([f"{gene} (predicted)"] if genes else []) + [f"Grad-CAM {gene}: {layer}" for layer in layers]
    return spatial(data, genes, key=pred_key if genes else None, obs=cols, ncols=ncols, cmap=cmap, title=titles,
                   table_key=table_key, **kwargs)
