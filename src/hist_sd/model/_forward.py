"""Applying a network to one prepared slide, per input kind, with test-time symmetry averaging on grids."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from hist_sd._core._grid import neighbours

if TYPE_CHECKING:
    import torch

    from hist_sd.model._section import Section

__all__ = ["ceil_to", "forward_section", "section_graph", "symmetries"]


def ceil_to(n: int, m: int) -> int:
    """``n`` rounded up to a multiple of ``m``."""
    return int(math.ceil(n / m) * m)


def symmetries(*, square: bool) -> list[tuple[bool, list[int]]]:
    """Grid symmetries as (transpose first, dimensions to flip): 8 on square grids, the 4 flips otherwise."""
    flips = [[], [-2], [-1], [-2, -1]]
    return [(t, f) for t in ((False, True) if square else (False,)) for f in flips]


def section_graph(section: Section) -> torch.Tensor:
    """``(2, E)`` edge index of the section's spot neighbours under its layout (8 on square grids, 6 on Visium)."""
    import torch

    pairs = neighbours(section.rows, section.cols, section.layout, row_parity=section.row_parity)
    return torch.as_tensor(np.ascontiguousarray(pairs.T))


def _grid(
    net: torch.nn.Module, section: Section, x: np.ndarray, *, device: torch.device, tta: bool, pad_multiple: int
) -> np.ndarray:
    import torch

    h = ceil_to(int(section.rows.max()) + 1, pad_multiple)
    w = ceil_to(int(section.cols.max()) + 1, pad_multiple)
    grid = torch.from_numpy(section.grid(x, (h, w))[None]).to(device)
    syms = symmetries(square=section.square) if tta else [(False, [])]
    total = None
    for transpose, flips in syms:
        g = grid.transpose(-1, -2) if transpose else grid
        g = g.flip(flips) if flips else g
        o = net(g.contiguous(memory_format=torch.channels_last))
        o = o.flip(flips) if flips else o
        o = o.transpose(-1, -2) if transpose else o
        total = o if total is None else total + o
    return section.ungrid((total / len(syms))[0].float().cpu().numpy())


def _spot(net: torch.nn.Module, section: Section, x: np.ndarray, *, device: torch.device, **_: object) -> np.ndarray:
    import torch

    xt = torch.from_numpy(x).to(device)
    return torch.cat([net(xt[i : i + 4096]) for i in range(0, len(xt), 4096)]).float().cpu().numpy()


def _set(net: torch.nn.Module, section: Section, x: np.ndarray, *, device: torch.device, **_: object) -> np.ndarray:
    import torch

    r = section.rows - section.rows.min()
    c = section.cols - section.cols.min()
    pos = torch.from_numpy(np.stack([r, c], 1).astype(np.int64))[None].to(device)
    return net(torch.from_numpy(x).to(device)[None], pos, None)[0].float().cpu().numpy()


def _graph(net: torch.nn.Module, section: Section, x: np.ndarray, *, device: torch.device, **_: object) -> np.ndarray:
    import torch

    return net(torch.from_numpy(x).to(device), section_graph(section).to(device)).float().cpu().numpy()


#: The forward pass of each input kind (see :data:`hist_sd.model.INPUT_KINDS`).
FORWARD = {"grid": _grid, "spot": _spot, "set": _set, "graph": _graph}


def forward_section(
    net: torch.nn.Module, kind: str, section: Section, x: np.ndarray, *, device: torch.device, tta: bool = False,
    pad_multiple: int = 16,
) -> np.ndarray:
    """Network outputs ``(n, n_outputs)`` for one section's prepared features ``x`` ``(n, d)``.

    Parameters
    ----------
    net
        The network (in eval mode).
    kind
        Input kind of the method.
    section
        The slide (grid coordinates, layout).
    x
        Standardised (and projected) features, one row per spot.
    device
        Where to run.
    tta
        Grid input: average over the grid's symmetries.
    pad_multiple
        Grid input: pad the grid to this multiple.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    return FORWARD[kind](net, section, x, device=device, tta=tta, pad_multiple=pad_multiple)
