"""Bridge from tables to model inputs: per-section features, targets and grid coordinates."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._utils import get_meta, match_genes, resolve

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")


def log_expression(adata: AnnData, genes: Sequence[str]) -> np.ndarray:
    """``log1p`` of library-size-normalised expression (to 1e4 per spot) for ``genes``, ``(n_obs, n_genes)``.

    Raw counts come from ``layers["counts"]`` when present, else from ``.X`` when it holds integers (library size
    over all genes of the table); a table without raw counts is taken as already log-normalised. The same scale
    as :func:`hist_sd.tl.evaluate` scores against.
    """
    from hist_sd.tl._evaluate import measured_matrix

    match_genes(adata.var_names, genes)
    if "counts" in adata.layers:
        x, _ = measured_matrix(adata, genes, layer="counts", normalize=True)
    else:
        x, _ = measured_matrix(adata, genes)
    return x.astype(np.float32)


def tumor_targets(adata: AnnData, truth_key: str) -> np.ndarray:
    """Tumour labels ``obs[truth_key]`` as a ``(n_obs, 1)`` float array (errors for a missing or incomplete column)."""
    if truth_key not in adata.obs:
        raise KeyError(
            f"`truth_key`={truth_key!r} is not an obs column; compute tumour labels with `hs.tl.tumor_labels`."
        )
    t = adata.obs[truth_key]
    if t.isna().any():
        raise ValueError(f"`obs[{truth_key!r}]` has missing values; tumour labels must be True/False.")
    return t.to_numpy().astype(np.float32)[:, None]


@dataclass
class Section:
    """One slide as model input: spot features, targets and grid coordinates (no AnnData inside models)."""

    name: str
    group: str
    features: np.ndarray  # (n, d) float32
    rows: np.ndarray  # (n,) int grid rows
    cols: np.ndarray  # (n,) int grid cols
    in_tissue: np.ndarray  # (n,) bool
    grid_shape: tuple[int, int]
    targets: np.ndarray | None = None  # (n, g) float32
    obs_names: pd.Index = field(default_factory=lambda: pd.Index([]))
    layout: str = "st"

    @property
    def n_obs(self) -> int:
        """Number of spots."""
        return len(self.features)

    def grid(self, values: np.ndarray, shape: tuple[int, int] | None = None, *, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Lay ``values`` ``(n, c)`` onto a ``(c, H, W)`` array (zeros off-spot), optionally shifted by ``offset``."""
        h, w = shape or self.grid_shape
        out = np.zeros((values.shape[1], h, w), dtype=np.float32)
        out[:, self.rows + offset[0], self.cols + offset[1]] = values.T
        return out

    def mask(self, shape: tuple[int, int] | None = None, *, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
        """``(H, W)`` bool mask of in-tissue spots."""
        h, w = shape or self.grid_shape
        m = np.zeros((h, w), dtype=bool)
        m[self.rows[self.in_tissue] + offset[0], self.cols[self.in_tissue] + offset[1]] = True
        return m

    def ungrid(self, grid: np.ndarray, *, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Inverse of :meth:`grid`: ``(c, H, W)`` -> ``(n, c)``."""
        return np.ascontiguousarray(grid[:, self.rows + offset[0], self.cols + offset[1]].T)


def slide_normalise(section: Section) -> np.ndarray:
    """Features standardised with the slide's own in-tissue mean and standard deviation (no labels involved)."""
    ref = section.features[section.in_tissue] if section.in_tissue.sum() > 1 else section.features
    mean = ref.mean(0)
    std = ref.std(0)
    std[std < 1e-6] = 1.0
    return ((section.features - mean) / std).astype(np.float32)


def _grid_coords(adata: AnnData, *, layout: str, pad_multiple: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int], str]:
    """Grid rows/cols and shape of a table, computed without writing into it."""
    from hist_sd.pp._grid import assign_grid

    if adata.n_obs == 0:
        raise ValueError("The table has no spots.")
    return assign_grid(adata, layout=layout, pad_multiple=pad_multiple)


def prepare_section(
    data: AnnData | SpatialData,
    *,
    features_key: str,
    genes: Sequence[str] | None = None,
    task: str = "expression",
    truth_key: str = C.TUMOR,
    group: str | None = None,
    groups_key: str | None = "patient",
    layout: str = "auto",
    pad_multiple: int = 16,
    table_key: str | None = None,
    name: str | None = None,
    with_targets: bool = True,
) -> Section:
    """Turn one slide into a :class:`Section` (features, grid coordinates and, when asked, training targets)."""
    _, adata = resolve(data, table_key)
    if features_key not in adata.obsm:
        raise KeyError(
            f"`features_key`={features_key!r} is not in the table's obsm ({sorted(adata.obsm)}); "
            "run `hs.pp.features` first."
        )
    feats = np.asarray(adata.obsm[features_key], dtype=np.float32)
    if not np.isfinite(feats).all():
        raise ValueError(f"`obsm[{features_key!r}]` contains NaN or infinite values.")
    rows, cols, shape, lay = _grid_coords(adata, layout=layout, pad_multiple=pad_multiple)
    in_tissue = adata.obs["in_tissue"].to_numpy().astype(bool) if "in_tissue" in adata.obs else np.ones(adata.n_obs, bool)
    if name is None:
        name = str(adata.obs["section"].iloc[0]) if "section" in adata.obs and adata.n_obs else "section"
    if group is None:
        group = str(adata.obs[groups_key].iloc[0]) if groups_key and groups_key in adata.obs and adata.n_obs else name
    targets = None
    if with_targets:
        if task == "expression":
            if genes is None:
                raise ValueError("`genes` must be given for task='expression'.")
            targets = log_expression(adata, genes)
        elif task == "tumor":
            targets = tumor_targets(adata, truth_key)
        else:
            raise ValueError(f"`task` must be 'expression' or 'tumor', got {task!r}.")
    return Section(
        name=name,
        group=group,
        features=feats,
        rows=rows,
        cols=cols,
        in_tissue=in_tissue,
        grid_shape=shape,
        targets=targets,
        obs_names=adata.obs_names.copy(),
        layout=lay,
    )


def check_feature_params(adata: AnnData, features_key: str) -> dict[str, Any]:
    """The parameters ``hs.pp.features`` stored for ``features_key`` (empty when it was computed elsewhere)."""
    entry = adata.uns.get(features_key, {})
    params = entry.get("params", {}) if isinstance(entry, dict) else {}
    return dict(params)


def table_meta(adata: AnnData) -> dict[str, Any]:
    """``uns["hist_sd"]`` or an empty dict."""
    try:
        return dict(get_meta(adata))
    except KeyError:
        return {}
