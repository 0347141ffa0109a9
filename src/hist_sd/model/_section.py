"""The data unit of the models: one slide as spot features, grid coordinates and (for training) targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._core._data import resolve
from hist_sd._core._expr import in_tissue_mask
from hist_sd._core._grid import SQUARE_LAYOUTS, assign_grid, gather, scatter
from hist_sd._docs import doc_params

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["Section", "feature_params", "prepare_section", "slide_normalise"]


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
    row_parity: int = 0  # Visium: array-row parity of grid row 0

    @property
    def n_obs(self) -> int:
        """Number of spots."""
        return len(self.features)

    @property
    def square(self) -> bool:
        """Whether the grid is square (8 symmetries) rather than hexagonal (Visium)."""
        return self.layout in SQUARE_LAYOUTS

    def grid(self, values: np.ndarray, shape: tuple[int, int] | None = None, *, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Lay ``values`` ``(n, c)`` onto a ``(c, H, W)`` array (zeros off-spot), optionally shifted by ``offset``."""
        return scatter(values, self.rows, self.cols, shape or self.grid_shape, offset=offset)

    def ungrid(self, grid: np.ndarray, *, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Inverse of :meth:`grid`: ``(c, H, W)`` -> ``(n, c)``."""
        return gather(grid, self.rows, self.cols, offset=offset)


def slide_normalise(section: Section) -> np.ndarray:
    """Features standardised with the slide's own in-tissue mean and standard deviation (no labels involved)."""
    ref = section.features[section.in_tissue] if section.in_tissue.sum() > 1 else section.features
    mean = ref.mean(0)
    std = ref.std(0)
    std[std < 1e-6] = 1.0
    return ((section.features - mean) / std).astype(np.float32)


def feature_params(adata: AnnData, features_key: str) -> dict[str, Any]:
    """The parameters ``hs.pp.features`` stored for ``features_key`` (empty when it was computed elsewhere)."""
    entry = adata.uns.get(features_key, {})
    params = entry.get("params", {}) if isinstance(entry, dict) else {}
    return dict(params)


@doc_params
def prepare_section(
    data: AnnData | SpatialData,
    *,
    features_key: str,
    targets: Any = None,
    genes: Sequence[str] | None = None,
    truth_key: str = C.TUMOR,
    group: str | None = None,
    groups_key: str | None = "patient",
    layout: str = "auto",
    pad_multiple: int = 16,
    table_key: str | None = None,
    name: str | None = None,
) -> Section:
    """Turn one slide into a :class:`Section`: features, grid coordinates and, given a task, its targets.

    Parameters
    ----------
    data
        The slide (its table holds the features).
    features_key
        ``obsm`` key of the features.
    targets
        A :class:`~hist_sd.model.TaskSpec` whose targets to compute, or ``None`` for prediction.
    genes, truth_key
        Passed to the task's target builder.
    group, groups_key
        The slide's cross-validation group: ``group``, else the first value of ``obs[groups_key]``, else ``name``.
    layout, pad_multiple
        Grid settings (see :func:`hist_sd.pp.grid`).
    %(table_key)s
    name
        Section name (default: ``obs["section"]``).
    """
    _, adata = resolve(data, table_key)
    if features_key not in adata.obsm:
        raise KeyError(
            f"`features_key`={features_key!r} is not in the table's obsm ({sorted(adata.obsm)}); "
            "run `hs.pp.features` first."
        )
    feats = np.asarray(adata.obsm[features_key], dtype=np.float32)
    if not np.isfinite(feats).all():
        raise ValueError(f"`obsm[{features_key!r}]` contains NaN or infinite values.")
    grid = assign_grid(adata, layout=layout, pad_multiple=pad_multiple)
    if name is None:
        name = str(adata.obs["section"].iloc[0]) if "section" in adata.obs and adata.n_obs else "section"
    if group is None:
        group = str(adata.obs[groups_key].iloc[0]) if groups_key and groups_key in adata.obs and adata.n_obs else name
    return Section(
        name=name,
        group=group,
        features=feats,
        rows=grid.rows,
        cols=grid.cols,
        in_tissue=in_tissue_mask(adata),
        grid_shape=grid.shape,
        targets=None if targets is None else targets.targets(adata, genes, truth_key),
        obs_names=adata.obs_names.copy(),
        layout=grid.layout,
        row_parity=grid.row_parity,
    )
