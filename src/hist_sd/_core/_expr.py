"""What ``.X`` holds and the one log-normalisation: raw-count detection, log1p(CP-target), in-tissue spots.

Every place that turns counts into the scale the models learn (training targets, evaluation, gene selection,
``hs.pp.normalize``, CNV inference) goes through :func:`log_normalize`, so they agree to the last bit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

logger = logging.getLogger("hist_sd")

__all__ = [
    "LOGNORM_LABEL",
    "TARGET_SUM",
    "classify",
    "counts_matrix",
    "in_tissue_mask",
    "is_counts",
    "log_normalize",
    "measured_genes",
    "measured_matrix",
    "spots_to_score",
    "training_expression",
]

#: Target sum of the count normalisation the models are trained on (``log1p(normalize_total(1e4))``).
TARGET_SUM = 1e4
#: Label of values log-normalised from raw counts here.
LOGNORM_LABEL = "log1p(CP10k)"


def is_counts(x: Any, *, n_check: int = 100_000) -> bool:
    """Whether a matrix holds raw counts: finite, non-negative whole numbers (checks up to ``n_check`` values)."""
    vals = x.data if sparse.issparse(x) else np.asarray(x).ravel()
    vals = np.asarray(vals[:n_check], dtype=np.float64)
    if vals.size == 0:
        return True
    if not np.isfinite(vals).all():
        return False
    return bool((vals >= 0).all() and (np.abs(vals - np.round(vals)) < 1e-6).all())


def classify(x: Any, uns: Any = None, *, n_check: int = 100_000) -> str:
    """What a matrix holds, judged on up to ``n_check`` stored values.

    Returns ``"counts"`` (finite non-negative whole numbers), ``"log1p"`` (finite, non-negative, and the table
    carries scanpy's ``uns["log1p"]`` marker), ``"non-negative"`` (finite and non-negative but neither: CP10k,
    log values without the marker ... cannot be told apart), ``"real"`` (finite with negative values: scaled or
    centred data) or ``"non-finite"`` (NaN or infinite values).
    """
    vals = x.data if sparse.issparse(x) else np.asarray(x).ravel()
    vals = np.asarray(vals[:n_check], dtype=np.float64)
    if vals.size and not np.isfinite(vals).all():
        return "non-finite"
    if vals.size and (vals < 0).any():
        return "real"
    if is_counts(vals):
        return "counts"
    if isinstance(uns, Mapping) and "log1p" in uns:
        return "log1p"
    return "non-negative"


#: What :func:`classify` means by each kind, for messages.
KINDS: dict[str, str] = {
    "counts": "raw counts",
    "log1p": "log1p-normalised values (scanpy's uns['log1p'] marker)",
    "non-negative": "non-integer values without scanpy's uns['log1p'] marker (CP10k? log values?)",
    "real": "negative values (scaled or centred data)",
    "non-finite": "NaN or infinite values",
}


def training_expression(adata: AnnData, genes: Sequence[str]) -> np.ndarray:
    """Expression of ``genes`` on the models' scale, ``log1p`` of counts per 10,000, for training targets.

    From ``layers["counts"]`` (which must hold raw counts), else ``.X`` when it holds raw counts or is marked
    log1p-normalised (scanpy's ``uns["log1p"]``; used as it is). Anything else is refused: CP10k, scaled,
    NaN or negative values would silently train a model on another scale.
    """
    if "counts" in adata.layers:
        kind = classify(adata.layers["counts"])
        if kind != "counts":
            raise ValueError(f"`layers['counts']` must hold raw counts, but it holds {KINDS[kind]}.")
        x, _ = measured_matrix(adata, genes, layer="counts", normalize=True)
        return x
    kind = classify(adata.X, adata.uns)
    if kind == "counts":
        x, _ = measured_matrix(adata, genes, normalize=True)
    elif kind == "log1p":
        logger.info("`X` is taken as log1p-normalised expression (uns['log1p'] is set) and used as it is.")
        x, _ = measured_matrix(adata, genes, normalize=False)
    else:
        raise ValueError(
            f"`X` holds {KINDS[kind]}: it is neither raw counts nor marked as log1p-normalised, so its scale cannot "
            "be told. Put raw counts in `layers['counts']` (or `X`), or log-normalise with `hs.pp.normalize` / "
            "`sc.pp.normalize_total` + `sc.pp.log1p`."
        )
    return x


def counts_matrix(adata: AnnData, layer: str | None = None, *, require: bool = True) -> tuple[Any, str]:
    """The raw counts of a table and where they came from: ``layers[layer]``, else ``layers["counts"]``, else ``X``.

    With ``require``, a source that does not hold raw counts is an error naming it.
    """
    if layer is not None:
        if layer not in adata.layers:
            raise KeyError(f"`layer`={layer!r} is not a layer of the table; it has {sorted(adata.layers)}.")
        x, where = adata.layers[layer], f"layers[{layer!r}]"
    elif "counts" in adata.layers:
        x, where = adata.layers["counts"], "layers['counts']"
    else:
        if adata.X is None:
            raise ValueError("The table has no `.X`; pass `layer=` with the raw counts.")
        x, where = adata.X, "X"
    if require and not is_counts(x):
        raise ValueError(
            f"`{where}` does not hold raw counts (negative, non-integer or non-finite values); put raw counts in "
            "`X` or `layers['counts']`, or name the layer with `layer=`."
        )
    return x, where


def log_normalize(
    counts: Any, cols: Sequence[int] | np.ndarray | None = None, *, target_sum: float = TARGET_SUM,
    dtype: Any = np.float64,
) -> Any:
    """``log1p(x / total * target_sum)`` per spot, the total taken over every gene of ``counts``.

    Parameters
    ----------
    counts
        ``(n_spots, n_genes)`` raw counts, dense or sparse.
    cols
        Only return these gene columns (the library size still uses all genes).
    target_sum
        Counts per spot after scaling (1e4: scanpy's ``normalize_total`` + ``log1p``, Seurat's LogNormalize).
    dtype
        Output dtype.

    Returns
    -------
    A matrix of the same kind (CSR for sparse input, else a NumPy array); spots without counts stay 0.
    """
    if sparse.issparse(counts):
        x = sparse.csr_matrix(counts, dtype=np.float64)
        totals = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
        sub = x if cols is None else sparse.csr_matrix(x[:, np.asarray(cols)])
    else:
        x = np.asarray(counts, dtype=np.float64)
        totals = x.sum(axis=1)
        sub = x if cols is None else x[:, np.asarray(cols)]
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(totals > 0, float(target_sum) / totals, 0.0)
    if sparse.issparse(sub):
        out = sparse.csr_matrix(sparse.diags(factor) @ sub)
        out.data = np.log1p(out.data)
        return out.astype(dtype)
    return np.log1p(sub * factor[:, None]).astype(dtype, copy=False)


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
    do_norm = (layer is None and is_counts(x)) if normalize is None else bool(normalize)
    if do_norm:
        sub = log_normalize(x, idx)
        return (sub.toarray() if sparse.issparse(sub) else sub), LOGNORM_LABEL
    sub = x[:, idx]
    sub = sub.toarray() if sparse.issparse(sub) else np.asarray(sub)
    return sub.astype(np.float64, copy=False), label


def in_tissue_mask(adata: AnnData) -> np.ndarray:
    """Boolean ``(n_obs,)``: ``obs["in_tissue"]`` truthy (missing values count as outside), all spots without it."""
    if "in_tissue" not in adata.obs:
        return np.ones(adata.n_obs, dtype=bool)
    vals = adata.obs["in_tissue"]
    if vals.dtype == bool:
        return vals.to_numpy(dtype=bool)
    num = pd.to_numeric(vals, errors="coerce").to_numpy(dtype=float)
    return np.nan_to_num(num, nan=0.0) != 0


def measured_genes(adata: AnnData, genes: Sequence[str], *, what: str = "table") -> list[str]:
    """The genes of ``genes`` that ``adata`` measures (``var_names``); the others are logged as not scored.

    The one rule of :func:`hist_sd.tl.evaluate` and :func:`hist_sd.tl.cross_validate`: a predicted gene that the
    held-out table does not measure is left out of the scores (with a warning in the log), never an error.
    """
    var = set(adata.var_names.astype(str))
    use = [g for g in genes if g in var]
    if len(use) < len(genes):
        missing = [g for g in genes if g not in var]
        logger.warning(
            "%d of %d predicted genes are not measured in the %s and are not scored: %s%s",
            len(missing), len(genes), what, ", ".join(missing[:10]), " …" if len(missing) > 10 else "",
        )
    return use


def spots_to_score(adata: AnnData, in_tissue_only: bool) -> np.ndarray:
    """The spots to score or draw: in-tissue ones (or all, ``in_tissue_only=False``); an error when there is none."""
    mask = in_tissue_mask(adata) if in_tissue_only else np.ones(adata.n_obs, dtype=bool)
    if not mask.any():
        raise ValueError("No spot is in tissue (`obs['in_tissue']`); pass `in_tissue_only=False`.")
    return mask
