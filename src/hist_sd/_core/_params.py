"""Key bookkeeping: refuse to overwrite, record parameters in ``uns[key]["params"]``, log what was written."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from anndata import AnnData

from hist_sd import _constants as C

logger = logging.getLogger("hist_sd")

__all__ = ["INPUT_KEYS", "check_key_free", "input_keys", "log_written", "store_params"]

#: Inputs that no result may replace, even with ``overwrite=True`` (per container).
INPUT_KEYS: dict[str, tuple[str, ...]] = {
    "obs": ("in_tissue", "array_row", "array_col", "array_x", "array_y", "section", "patient",
            C.REGION_KEY, C.INSTANCE_KEY),
    "obsm": (C.SPATIAL,),
    "layers": ("counts",),
    "uns": (C.UNS_KEY, "spatial", "spatialdata_attrs", "log1p"),
}


def input_keys(adata: AnnData, where: str) -> set[str]:
    """The keys of ``adata.<where>`` that hold inputs.

    :data:`INPUT_KEYS`, and in ``obsm``/``uns`` the features (entries whose ``uns[key]["params"]`` record the
    encoder that made them, as :func:`hist_sd.pp.features` writes; predictions record a ``method`` too).
    """
    keys = set(INPUT_KEYS.get(where, ()))
    if where in ("obsm", "uns"):
        keys |= {k for k in adata.obsm if _is_features(adata, k)}
    return keys


def _is_features(adata: AnnData, key: str) -> bool:
    entry = adata.uns.get(key)
    params = entry.get("params") if isinstance(entry, Mapping) else None
    return isinstance(params, Mapping) and "encoder" in params and "method" not in params  # not a prediction


def check_key_free(
    container: Mapping[str, Any], key: str, what: str, *, overwrite: bool = False, protected: Iterable[str] = ()
) -> None:
    """Raise if ``key`` already exists in ``container`` unless ``overwrite`` was asked for; never for an input.

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
    protected
        Keys that hold inputs (:func:`input_keys`): refused even with ``overwrite``.
    """
    if key in set(protected):
        raise KeyError(
            f"`{what}[{key!r}]` holds an input (coordinates, features, counts or tissue mask); a result never "
            "replaces it, not even with `overwrite=True`. Pass another `key_added`."
        )
    if key in container and not overwrite:
        raise KeyError(f"`{what}[{key!r}]` exists already; pass another `key_added` or `overwrite=True`.")


def store_params(adata: AnnData, key: str, params: Mapping[str, Any], **extra: Any) -> None:
    """Record a step's parameters in ``adata.uns[key]["params"]`` (values made h5ad/zarr friendly).

    ``None`` cannot be stored in h5ad or zarr: parameters that are ``None`` are left out (a missing parameter
    reads back as ``params.get(name)`` = ``None``), never written as the string ``"None"``.
    """
    entry = dict(adata.uns.get(key, {})) if isinstance(adata.uns.get(key), Mapping) else {}
    entry["params"] = _serialisable(params)
    entry.update(_serialisable(extra))
    adata.uns[key] = entry


def _serialisable(value: Any) -> Any:
    if isinstance(value, bool | int | float | str | np.generic | np.ndarray):
        return value
    if isinstance(value, Mapping):
        return {str(k): _serialisable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value):
            return np.asarray(value, dtype=object).astype(str)
        if all(isinstance(v, bool | int | float | np.generic) for v in value):
            return np.asarray(value)
        return [_serialisable(v) for v in value if v is not None]
    return str(value)


def log_written(where: str, *keys: str) -> None:
    """Log the keys a function has written (scanpy style)."""
    for key in keys:
        logger.info("added %s", f"{where}[{key!r}]")
