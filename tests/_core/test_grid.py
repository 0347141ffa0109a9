"""One neighbour rule per layout, on the grid coordinates every caller holds (GNN graph, tumour smoothing)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import hist_sd as hs
from hist_sd._core._grid import assign_grid, neighbours
from hist_sd.model import prepare_section
from hist_sd.model._forward import section_graph


def _degree(pairs: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(pairs[:, 0], minlength=n)


def _interior(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return (rows > rows.min() + 1) & (rows < rows.max() - 1) & (cols > cols.min() + 1) & (cols < cols.max() - 1)


def test_visium_interior_spot_has_six_neighbours(visium: AnnData) -> None:
    grid = assign_grid(visium, layout="visium", pad_multiple=1)
    pairs = neighbours(grid.rows, grid.cols, "visium", row_parity=grid.row_parity)
    deg = _degree(pairs, visium.n_obs)
    inner = _interior(grid.rows, grid.cols)
    assert inner.sum() > 4000 and (deg[inner] == 6).all() and deg.max() == 6
    # the neighbours of one spot are the hexagon around it in array coordinates
    row, acol = visium.obs["array_row"].to_numpy(), visium.obs["array_col"].to_numpy()
    i = int(np.flatnonzero((row == 40) & (acol == 60))[0])
    nbrs = {(int(row[j]), int(acol[j])) for j in pairs[pairs[:, 0] == i, 1]}
    assert nbrs == {(40, 58), (40, 62), (39, 59), (39, 61), (41, 59), (41, 61)}
    # the rule meant for array coordinates, applied to these grid coordinates (the old GNN graph), joins 10
    old = hs.nn.spot_graph(grid.rows, grid.cols, radius=2.1, row_scale=np.sqrt(3)).numpy().T
    assert np.median(_degree(old, visium.n_obs)[inner]) == 10


def test_visium_rule_keeps_row_parity_when_the_first_row_is_odd(visium: AnnData) -> None:
    part = visium[visium.obs["array_row"].to_numpy() >= 3].copy()  # first array row 3: odd
    grid = assign_grid(part, layout="visium", pad_multiple=1)
    assert grid.rows.min() == 0 and grid.row_parity == 1
    row, acol = part.obs["array_row"].to_numpy(), part.obs["array_col"].to_numpy()

    def true_hexagon(pairs: np.ndarray) -> bool:
        dr = np.abs(row[pairs[:, 0]] - row[pairs[:, 1]])
        dc = np.abs(acol[pairs[:, 0]] - acol[pairs[:, 1]])
        return bool((((dr == 1) & (dc == 1)) | ((dr == 0) & (dc == 2))).all())

    pairs = neighbours(grid.rows, grid.cols, "visium", row_parity=grid.row_parity)
    assert true_hexagon(pairs)
    assert (_degree(pairs, part.n_obs)[_interior(grid.rows, grid.cols)] == 6).all()
    # the parity matters (the test can fail): the mirrored rule joins spots that are not neighbours
    assert not true_hexagon(neighbours(grid.rows, grid.cols, "visium", row_parity=0))


def test_square_grid_has_eight_or_four_neighbours() -> None:
    rr, cc = np.meshgrid(np.arange(6), np.arange(7), indexing="ij")
    rows, cols = rr.ravel(), cc.ravel()
    inner = _interior(rows, cols) | ((rows > 0) & (rows < 5) & (cols > 0) & (cols < 6))
    for layout in ("st", "tiles"):
        assert (_degree(neighbours(rows, cols, layout), rows.size)[inner] == 8).all()
        assert (_degree(neighbours(rows, cols, layout, n_neighs=4), rows.size)[inner] == 4).all()
    corner = int(np.flatnonzero((rows == 0) & (cols == 0))[0])
    assert _degree(neighbours(rows, cols, "st"), rows.size)[corner] == 3
    with pytest.raises(ValueError, match="n_neighs"):
        neighbours(rows, cols, "st", n_neighs=6)
    with pytest.raises(ValueError, match="layout"):
        neighbours(rows, cols, "hex")


def test_gnn_graph_of_a_visium_section_uses_the_hexagonal_rule(visium: AnnData) -> None:
    section = prepare_section(visium, features_key="X_hist")
    edges = section_graph(section).numpy().T
    deg = _degree(edges, visium.n_obs)
    assert deg.max() == 6 and np.median(deg) == 6


def test_st_section_graph_matches_the_square_rule() -> None:
    obs = pd.DataFrame({"array_row": [0, 0, 1, 1, 5], "array_col": [0, 1, 0, 1, 5]}, index=list("abcde"))
    ad = AnnData(np.zeros((5, 1)), obs=obs, obsm={"X_hist": np.zeros((5, 2))}, uns={"hist_sd": {"technology": "st"}})
    deg = _degree(section_graph(prepare_section(ad, features_key="X_hist")).numpy().T, 5)
    assert deg.tolist() == [3, 3, 3, 3, 0]
