"""Moran's I and principal components for 90% of the variance (over-smoothing of predictions)."""

from __future__ import annotations

import numpy as np
import pytest

from hist_sd._core._grid import neighbours
from hist_sd._core._stats import morans_i, n_components


def test_morans_i_matches_squidpy_on_a_grid() -> None:
    import anndata as ad
    import squidpy as sq

    rng = np.random.default_rng(0)
    rr, cc = np.meshgrid(np.arange(12), np.arange(15), indexing="ij")
    rows, cols = rr.ravel(), cc.ravel()
    smooth = np.sin(rows / 3.0) + np.cos(cols / 4.0)
    x = np.column_stack([smooth + 0.1 * rng.normal(size=rows.size), rng.normal(size=rows.size),
                         np.where((rows + cols) % 2 == 0, 1.0, -1.0)])
    pairs = neighbours(rows, cols, "st", n_neighs=4)
    ours = morans_i(x, pairs)
    from scipy import sparse

    a = ad.AnnData(x)
    n = rows.size  # the same graph, binary weights (not row-normalised)
    a.obsp["spatial_connectivities"] = sparse.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), (n, n))
    ref = sq.gr.spatial_autocorr(a, mode="moran", n_perms=None, copy=True, transformation=False,
                                 show_progress_bar=False)
    np.testing.assert_allclose(ours, ref.loc[a.var_names, "I"].to_numpy(), atol=1e-8)
    assert ours[0] > 0.8 and abs(ours[1]) < 0.15 and ours[2] == pytest.approx(-1.0)  # smooth, noise, chessboard
    assert np.isnan(morans_i(np.ones((10, 1)), np.array([[0, 1], [1, 0]]))).all()  # constant: undefined


def test_n_components() -> None:
    rng = np.random.default_rng(1)
    low_rank = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 30))
    assert n_components(low_rank) <= 2
    assert n_components(rng.normal(size=(200, 30))) > 20
    assert n_components(np.ones((5, 3))) == 0
