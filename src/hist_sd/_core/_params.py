"""Key bookkeeping: refuse to overwrite, record parameters in ``uns[key]["params"]``, log what was written."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from anndata import AnnData

logger = logging.getLogger("hist_sd")

__all__ = ["check_key_free", "log_written", "store_params"]


def check_key_free(container: Mapping[str, Any], key: str, what: str, *, overwrite: bool = False) -> None:
    """Raise if ``key`` already exists in ``container`` unless ``overwrite`` was asked for.

    Parameters
    ----------
    container
        ``adata.obsm``, ``adata.obs``, ``adata.uns``, ``sdata.tables`` …
    key
        The key about to be written.
    what
        How to name the container in the message, e.g. ``"obsm"``.
    overwrite
        Allow replacing an existing entry.
    """
    if key in container and not overwrite:
        raise KeyError(f"`{what}[{key!r}]` exists already; pass another `key_added` or `overwrite=True`.")


def store_params(adata: AnnData, key: str, params: Mapping[str, Any], **extra: Any) -> None:
    """Record a step's parameters in ``adata.uns[key]["params"]`` (values made h5ad/zarr friendly)."""
    entry = dict(adata.uns.get(key, {})) if isinstance(adata.uns.get(key), Mapping) else {}
    entry["params"] = {k: _serialisable(v) for k, v in params.items()}
    entry.update({k: _serialisable(v) for k, v in extra.items()})
    adata.uns[key] = entry


def _serialisable(value: Any) -> Any:
    if value is None:
        return "None"
    if isinstance(value, bool | int | float | str | np.generic | np.ndarray):
        return value
    if isinstance(value, Mapping):
        return {str(k): _serialisable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value):
            return np.asarray(value, dtype=object).astype(str)
        if all(isinstance(v, bool | int | float | np.generic) for v in value):
            return np.asarray(value)
        return [_serialisable(v) for v in value]
    return str(value)


def log_written(where: str, *keys: str) -> None:
    """Log the keys a function has written (scanpy style)."""
    for key in keys:
        logger.info("added %s", f"{where}[{key!r}]")
