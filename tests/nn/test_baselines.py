from __future__ import annotations

import numpy as np
import pytest
import torch

from hist_sd.models import SpotGAT, SpotMLP, SpotTransformer, spot_graph


def _edges(ei: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in ei.T}


# --- SpotMLP -------------------------------------------------------------------------------------------------


def test_spot_mlp() -> None:
    net = SpotMLP(20, 4, hidden=8)
    assert net(torch.randn(11, 20)).shape == (11, 4)
    assert net.hparams == {"in_channels": 20, "out_channels": 4, "hidden": 8, "dropout": 0.1}
    with pytest.raises(ValueError, match="in_channels=20"):
        net(torch.randn(11, 19))
    with pytest.raises(ValueError, match="dropout"):
        SpotMLP(20, 4, dropout=1.0)


# --- SpotTransformer -----------------------------------------------------------------------------------------


def _tf() -> SpotTransformer:
    return SpotTransformer(10, 3, dim=16, depth=2, heads=4, max_grid=12).eval()


def test_transformer_shapes_and_position_matters() -> None:
    net = _tf()
    x = torch.randn(2, 9, 10)
    pos = torch.randint(0, 12, (2, 9, 2))
    out = net(x, pos)
    assert out.shape == (2, 9, 3)
    moved = net(x, (pos + 1) % 12)
    assert not torch.allclose(out, moved)  # learned positional embeddings are used


def test_transformer_padding_does_not_leak() -> None:
    net = _tf()
    x = torch.randn(2, 8, 10)
    pos = torch.randint(0, 12, (2, 8, 2))
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[1, 5:] = True
    out = net(x, pos, pad)
    assert (out[1, 5:] == 0).all()
    # change features and (even out-of-range) positions of the padded spots
    x2, pos2 = x.clone(), pos.clone()
    x2[1, 5:] = 100 * torch.randn(3, 10)
    pos2[1, 5:] = 999
    out2 = net(x2, pos2, pad)
    torch.testing.assert_close(out2[~pad], out[~pad], rtol=0, atol=1e-6)
    # and the padded slide gives what it gives alone
    alone = net(x[1:, :5], pos[1:, :5])
    torch.testing.assert_close(out[1, :5], alone[0], rtol=1e-5, atol=1e-5)


def test_transformer_errors() -> None:
    net = _tf()
    x = torch.randn(1, 4, 10)
    with pytest.raises(ValueError, match="max_grid=12"):
        net(x, torch.full((1, 4, 2), 12))
    with pytest.raises(ValueError, match="max_grid=12"):
        net(x, torch.full((1, 4, 2), -1))
    with pytest.raises(ValueError, match="pos"):
        net(x, torch.zeros(1, 4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        net(x, torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match="every spot"):
        net(x, torch.zeros(1, 4, 2, dtype=torch.long), torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_padding_mask"):
        net(x, torch.zeros(1, 4, 2, dtype=torch.long), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="divide"):
        SpotTransformer(10, 3, dim=10, heads=4)


# --- SpotGAT and spot_graph ----------------------------------------------------------------------------------


def test_spot_graph_square_grid() -> None:
    rows, cols = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    ei = spot_graph(rows, cols)
    assert ei.dtype == torch.long and ei.shape == (2, 12)  # diagonals (1.41) are within 1.5
    assert _edges(ei) == {(i, j) for i in range(4) for j in range(4) if i != j}
    ei1 = spot_graph(np.array([0, 0, 0, 5]), np.array([0, 1, 2, 2]), radius=1.0)
    assert _edges(ei1) == {(0, 1), (1, 0), (1, 2), (2, 1)}
    assert spot_graph(np.array([3]), np.array([4])).shape == (2, 0)


def test_spot_graph_visium_hex() -> None:
    # hexagonal Visium array: columns step by 2, odd rows shifted by one
    rows, cols = np.meshgrid(np.arange(5), np.arange(0, 12, 2), indexing="ij")
    cols = cols + (rows % 2)
    rows, cols = rows.ravel(), cols.ravel()
    ei = spot_graph(rows, cols, radius=2.1, row_scale=np.sqrt(3))
    deg = np.bincount(ei[0].numpy(), minlength=rows.size)
    centre = np.flatnonzero((rows == 2) & (cols == 4))[0]
    assert deg[centre] == 6
    assert deg.max() == 6
    nbrs = {(int(rows[j]), int(cols[j])) for j in ei[1][ei[0] == centre]}
    assert nbrs == {(2, 2), (2, 6), (1, 3), (1, 5), (3, 3), (3, 5)}
    # without the row scaling the spots two rows up/down (a farther ring) would be joined too
    assert np.bincount(spot_graph(rows, cols, radius=2.0)[0].numpy())[centre] == 8


def test_spot_graph_real_b4(b4_grid: tuple[np.ndarray, np.ndarray]) -> None:
    rows, cols = b4_grid
    ei = spot_graph(rows, cols)
    e = _edges(ei)
    assert len(e) == ei.shape[1]  # no duplicates
    assert all((j, i) in e for i, j in e)  # both directions
    assert all(i != j for i, j in e)  # no self loops
    d = np.hypot(rows[ei[0]] - rows[ei[1]], cols[ei[0]] - cols[ei[1]])
    assert d.max() <= 1.5
    deg = np.bincount(ei[0].numpy(), minlength=rows.size)
    assert deg.max() <= 8 and np.median(deg) >= 5  # B4 is mostly a filled square grid
    # brute-force count agrees
    dd = np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])
    assert ei.shape[1] == int(((dd <= 1.5) & (dd > 0)).sum())


def test_spot_graph_errors() -> None:
    with pytest.raises(ValueError, match="equal length"):
        spot_graph(np.arange(3), np.arange(4))
    with pytest.raises(ValueError, match="radius"):
        spot_graph(np.arange(3), np.arange(3), radius=0)
    with pytest.raises(ValueError, match="row_scale"):
        spot_graph(np.arange(3), np.arange(3), row_scale=-1)
    with pytest.raises(ValueError, match="finite"):
        spot_graph(np.array([0, np.nan]), np.array([0, 1]))


def test_gat_shapes_and_locality(b4_grid: tuple[np.ndarray, np.ndarray]) -> None:
    rows, cols = b4_grid
    n = rows.size
    net = SpotGAT(16, 5, hidden=16, heads=4, layers=2).eval()
    x = torch.randn(n, 16)
    ei = spot_graph(rows, cols)
    out = net(x, ei)
    assert out.shape == (n, 5)
    # a second, disconnected slide appended to the batch (or padding nodes) does not change the first
    x_pad = torch.cat([x, 50 * torch.randn(40, 16)])
    ei_pad = torch.cat([ei, spot_graph(np.arange(40) // 8, np.arange(40) % 8) + n], dim=1)
    torch.testing.assert_close(net(x_pad, ei_pad)[:n], out, rtol=1e-5, atol=1e-5)
    # the graph is used: changing one spot's features changes its neighbours but not spots 3+ hops away
    k = 0
    x2 = x.clone()
    x2[k] += 10
    out2 = net(x2, ei)
    changed = (out2 - out).abs().amax(dim=1) > 1e-6
    nbrs = ei[1][ei[0] == k]
    assert changed[nbrs].all()
    far = np.hypot(rows - rows[k], cols - cols[k]) > 3 * 1.5
    assert not changed[torch.as_tensor(far)].any()


def test_gat_errors() -> None:
    net = SpotGAT(4, 2, hidden=8, heads=2)
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"\(2, E\)"):
        net(x, torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        net(x, torch.tensor([[0, 3], [3, 0]]))
    with pytest.raises(ValueError, match="torch.long"):
        net(x, torch.tensor([[0, 1], [1, 0]], dtype=torch.int32))
    with pytest.raises(ValueError, match="multiple of `heads`"):
        SpotGAT(4, 2, hidden=10, heads=4)
