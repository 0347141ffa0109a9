"""Baseline networks that predict per-spot outputs from per-spot histology features.

* :class:`SpotMLP`: an ST-Net-style per-spot head (no spatial context).
* :class:`SpotTransformer`: HisToGene-style self-attention over all spots of a slide, with learned 2-D positional
  embeddings of the integer grid position.
* :class:`SpotGAT`: graph attention over the spot-neighbour graph (:func:`spot_graph`), with residual connections.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hist_sd.nn._base import HParamsModule, check_channels

__all__ = ["SpotGAT", "SpotMLP", "SpotTransformer", "spot_graph"]


class SpotMLP(HParamsModule):
    """Per-spot two-layer perceptron (ST-Net-style head on precomputed features).

    Parameters
    ----------
    in_channels
        Feature dimension.
    out_channels
        Output dimension (genes, or 1 tumour logit).
    hidden
        Hidden width.
    dropout
        Dropout after the hidden layer.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, hidden: int = 256, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self._save_hparams(ints=("in_channels", "out_channels", "hidden"), probs=("dropout",))
        self.in_channels = in_channels
        self.net = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels)`` spot features to ``(N, out_channels)``."""
        check_channels("x", x, 2, self.in_channels, "(N, C)")
        return self.net(x)


class SpotTransformer(HParamsModule):
    """HisToGene-style transformer over the spots of a slide.

    Spot features are linearly embedded, learned row and column embeddings of each spot's integer grid position
    are added, and a pre-norm transformer encoder mixes all spots of a slide. Padded spots (``key_padding_mask``)
    are ignored as keys, so they never influence real spots; their outputs are set to 0.

    Parameters
    ----------
    in_channels
        Feature dimension.
    out_channels
        Output dimension.
    dim
        Model width.
    depth
        Number of transformer layers.
    heads
        Attention heads (must divide ``dim``).
    dropout
        Dropout inside the transformer layers.
    max_grid
        Grid rows and columns must lie in ``[0, max_grid)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        max_grid: int = 128,
    ) -> None:
        super().__init__()
        self._save_hparams(ints=("in_channels", "out_channels", "dim", "depth", "heads", "max_grid"), probs=("dropout",))
        if dim % heads:
            raise ValueError(f"`heads` ({heads}) must divide `dim` ({dim}).")
        self.in_channels = in_channels
        self.max_grid = max_grid
        self.embed = nn.Linear(in_channels, dim)
        self.row_embed = nn.Embedding(max_grid, dim)
        self.col_embed = nn.Embedding(max_grid, dim)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=2 * dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_channels)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predict ``(B, N, out_channels)`` from spot features and grid positions.

        Parameters
        ----------
        x
            ``(B, N, in_channels)`` spot features (slides padded to a common ``N``).
        pos
            ``(B, N, 2)`` integer grid ``(row, col)`` of each spot, in ``[0, max_grid)`` (ignored where padded).
        key_padding_mask
            ``(B, N)`` bool, ``True`` at padded spots; ``None`` when nothing is padded.

        Returns
        -------
        ``(B, N, out_channels)``; 0 at padded spots.
        """
        check_channels("x", x, 3, self.in_channels, "(B, N, C)")
        b, n = x.shape[:2]
        if not isinstance(pos, torch.Tensor) or pos.shape != (b, n, 2):
            got = tuple(pos.shape) if isinstance(pos, torch.Tensor) else type(pos).__name__
            raise ValueError(
                f"`pos` must be a (B, N, 2) = ({b}, {n}, 2) tensor of grid (row, col), got {got}."
            )
        if pos.is_floating_point() or pos.dtype == torch.bool:
            raise ValueError(f"`pos` must be an integer tensor, got {pos.dtype}.")
        if key_padding_mask is not None:
            if key_padding_mask.shape != (b, n) or key_padding_mask.dtype != torch.bool:
                raise ValueError(
                    f"`key_padding_mask` must be a ({b}, {n}) bool tensor (True = padding), "
                    f"got {key_padding_mask.dtype} of shape {tuple(key_padding_mask.shape)}."
                )
            if bool(key_padding_mask.all(dim=1).any()):
                raise ValueError("`key_padding_mask` marks every spot of a slide as padding.")
            pos = pos.masked_fill(key_padding_mask[..., None], 0)
        pos = pos.long()
        if n and (int(pos.min()) < 0 or int(pos.max()) >= self.max_grid):
            raise ValueError(
                f"`pos` must lie in [0, max_grid={self.max_grid}) at non-padded spots, got values in "
                f"[{int(pos.min())}, {int(pos.max())}]; build the model with a larger `max_grid`."
            )
        h = self.embed(x) + self.row_embed(pos[..., 0]) + self.col_embed(pos[..., 1])
        h = self.encoder(h, src_key_padding_mask=key_padding_mask)
        out = self.head(self.norm(h))
        if key_padding_mask is not None:
            out = out.masked_fill(key_padding_mask[..., None], 0.0)
        return out


class SpotGAT(HParamsModule):
    """Graph attention network over the spot-neighbour graph.

    The spot features are projected to ``hidden`` channels; each of ``layers`` GATv2 layers (``heads`` heads of
    ``hidden // heads`` channels, concatenated, self loops added) is followed by LayerNorm, ELU and dropout and
    added to its input (residual), so the input projection reaches the head directly; a linear head maps to the
    outputs. Only LayerNorm is used, so a spot's output depends only on the spots connected to it (up to
    ``layers`` hops), never on other graphs in the same batch.

    Parameters
    ----------
    in_channels
        Feature dimension.
    out_channels
        Output dimension.
    hidden
        Hidden width (a multiple of ``heads``).
    heads
        Attention heads per layer.
    layers
        Number of graph-attention layers.
    dropout
        Dropout on features and attention coefficients.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        hidden: int = 128,
        heads: int = 4,
        layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GATv2Conv

        self._save_hparams(ints=("in_channels", "out_channels", "hidden", "heads", "layers"), probs=("dropout",))
        if hidden % heads:
            raise ValueError(f"`hidden` ({hidden}) must be a multiple of `heads` ({heads}).")
        self.in_channels = in_channels
        self.proj = nn.Linear(in_channels, hidden)
        self.convs = nn.ModuleList(
            GATv2Conv(hidden, hidden // heads, heads=heads, dropout=dropout) for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, out_channels)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels)`` spot features on a graph ``edge_index`` ``(2, E)`` to ``(N, out_channels)``."""
        check_channels("x", x, 2, self.in_channels, "(N, C)")
        n = x.shape[0]
        if not isinstance(edge_index, torch.Tensor) or edge_index.ndim != 2 or edge_index.shape[0] != 2:
            got = (
                tuple(edge_index.shape) if isinstance(edge_index, torch.Tensor) else type(edge_index).__name__
            )
            raise ValueError(f"`edge_index` must be a (2, E) long tensor, got {got}.")
        if edge_index.dtype != torch.long:
            raise ValueError(f"`edge_index` must have dtype torch.long, got {edge_index.dtype}.")
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
            raise ValueError(f"`edge_index` refers to nodes outside [0, {n}) (x has {n} rows).")
        h = self.proj(x)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = h + self.drop(nn.functional.elu(norm(conv(h, edge_index))))
        return self.head(h)


def spot_graph(
    rows: np.ndarray, cols: np.ndarray, *, radius: float = 1.5, row_scale: float = 1.0
) -> torch.Tensor:
    """Edges between spots whose grid positions lie within ``radius`` of each other.

    Parameters
    ----------
    rows
        Grid row of each spot (1-D, integer or float).
    cols
        Grid column of each spot (same length).
    radius
        Maximum Euclidean distance in grid units (after ``row_scale``). ``1.5`` joins the 8 neighbours of a
        square (legacy ST) grid.
    row_scale
        Rows are multiplied by this before measuring distances. For Visium ``array_row`` / ``array_col``
        (columns step by 2, odd rows shifted by 1) use ``row_scale=np.sqrt(3)`` and ``radius=2.1``: this joins
        exactly the 6 hexagonal neighbours, all at distance 2. Grid coordinates of a layout (where Visium
        columns are already halved) go to :func:`hist_sd._core._grid.neighbours` instead, which knows each
        layout's rule.

    Returns
    -------
    ``(2, E)`` ``torch.long`` edge index with both directions of every edge and no self loops, sorted by
    source then target.
    """
    from hist_sd._core._grid import radius_pairs

    r = np.asarray(rows, dtype=float)
    c = np.asarray(cols, dtype=float)
    if r.ndim != 1 or c.ndim != 1 or r.shape != c.shape:
        raise ValueError(
            f"`rows` and `cols` must be 1-D arrays of equal length, got shapes {r.shape} and {c.shape}."
        )
    if not (np.isfinite(r).all() and np.isfinite(c).all()):
        raise ValueError("`rows` and `cols` must be finite.")
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"`radius` must be a positive number, got {radius!r}.")
    if not np.isfinite(row_scale) or row_scale <= 0:
        raise ValueError(f"`row_scale` must be a positive number, got {row_scale!r}.")
    pairs = radius_pairs(np.column_stack([r * float(row_scale), c]), float(radius))
    return torch.as_tensor(np.ascontiguousarray(pairs.T))
