"""Mini-batches of each input kind: they draw (augmented) training samples and yield the loss of each step."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hist_sd.model._forward import ceil_to, section_graph

if TYPE_CHECKING:
    import torch

    from hist_sd.model import Section

__all__ = ["BATCHERS", "SPOT_BATCH", "batch_context"]

#: Spots per mini-batch for per-spot input.
SPOT_BATCH = 256

Loss = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def batch_context(kind: str, sections: Sequence[Section], *, pad_multiple: int, crop: int | None) -> dict[str, Any]:
    """Per-kind precomputation: the common padded grid (and crop window) size, graphs."""
    extent = max(max(int(s.rows.max()) + 1, int(s.cols.max()) + 1) for s in sections)
    ctx: dict[str, Any] = {"square": all(s.square for s in sections)}
    if kind == "grid":
        ctx["size"] = ceil_to(extent + 4, pad_multiple)
        if crop:
            ctx["crop"] = ceil_to(int(crop), pad_multiple)
    if kind == "graph":
        ctx["edges"] = [section_graph(s) for s in sections]
    return ctx


def _noisy(x: np.ndarray, sd: float, rng: np.random.Generator, augment: bool) -> np.ndarray:
    """``x`` plus Gaussian training noise of standard deviation ``sd``."""
    if not augment or not sd:
        return x
    return (x + sd * rng.standard_normal(x.shape)).astype(np.float32)


def _augment_coords(
    s: Section, size: int, *, augment: bool, square: bool, rng: np.random.Generator, shift: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly flipped / rotated / shifted grid coordinates of a section inside a ``size`` x ``size`` canvas."""
    r, c = s.rows.copy(), s.cols.copy()
    if augment:
        if square and rng.random() < 0.5:
            r, c = c, r  # transpose (with the flips below this gives all 8 symmetries of the square grid)
        if rng.random() < 0.5:
            r = r.max() - r
        if rng.random() < 0.5:
            c = c.max() - c
    r = r - r.min()
    c = c - c.min()
    if augment and shift:
        r = r + rng.integers(0, max(size - int(r.max()), 1))
        c = c + rng.integers(0, max(size - int(c.max()), 1))
    if r.max() >= size or c.max() >= size:
        raise ValueError("A training section does not fit the training grid; this is a bug.")
    return r, c


def _window(s: Section, crop: int, *, augment: bool, square: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Coordinates of a random ``crop`` window centred near an in-tissue spot, and which spots fall inside."""
    r, c = _augment_coords(s, 10**6, augment=augment, square=square, rng=rng, shift=False)
    centre = rng.choice(np.flatnonzero(s.in_tissue))
    r = r - r[centre] + crop // 2 + (rng.integers(-crop // 4, crop // 4 + 1) if augment else 0)
    c = c - c[centre] + crop // 2 + (rng.integers(-crop // 4, crop // 4 + 1) if augment else 0)
    return r, c, (r >= 0) & (r < crop) & (c >= 0) & (c < crop)


def grid_batches(
    net: torch.nn.Module, sections: Sequence[Section], ctx: dict[str, Any], loss: Loss, *, batch_size: int,
    augment: bool, noise: float, rng: np.random.Generator, device: torch.device,
) -> Iterator[torch.Tensor]:
    """Whole slides, or with ``ctx["crop"]`` random windows (about two windows' worth of spots per slide)."""
    import torch

    crop = ctx.get("crop")
    size = crop or ctx["size"]
    d, g = sections[0].features.shape[1], sections[0].targets.shape[1]
    if crop:  # random windows centred on in-tissue spots: many distinct samples from a few slides
        per = [max(1, math.ceil(2 * int(s.in_tissue.sum()) / crop**2)) for s in sections]
        samples = rng.permutation(np.repeat(np.arange(len(sections)), per))
    else:
        samples = rng.permutation(len(sections))
    for start in range(0, len(samples), batch_size):
        idx = samples[start : start + batch_size]
        x = np.zeros((len(idx), d, size, size), np.float32)
        y = np.zeros((len(idx), g, size, size), np.float32)
        m = np.zeros((len(idx), size, size), bool)
        for j, i in enumerate(idx):
            s = sections[i]
            if crop:
                r, c, keep = _window(s, crop, augment=augment, square=ctx["square"], rng=rng)
            else:
                r, c = _augment_coords(s, size, augment=augment, square=ctx["square"], rng=rng)
                keep = np.ones(s.n_obs, bool)
            x[j][:, r[keep], c[keep]] = _noisy(s.features[keep], noise, rng, augment).T
            y[j][:, r[keep], c[keep]] = s.targets[keep].T
            tissue = keep & s.in_tissue
            m[j][r[tissue], c[tissue]] = True
        if not m.any():
            continue
        pred = net(torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last))
        yield loss(pred, torch.from_numpy(y).to(device), torch.from_numpy(m).to(device))


def spot_batches(
    net: torch.nn.Module, sections: Sequence[Section], ctx: dict[str, Any], loss: Loss, *, batch_size: int,
    augment: bool, noise: float, rng: np.random.Generator, device: torch.device,
) -> Iterator[torch.Tensor]:
    """Shuffled in-tissue spots of all slides, :data:`SPOT_BATCH` at a time."""
    import torch

    if "x" not in ctx:
        ctx["x"] = torch.from_numpy(np.concatenate([s.features[s.in_tissue] for s in sections]))
        ctx["y"] = torch.from_numpy(np.concatenate([s.targets[s.in_tissue] for s in sections]))
    x, y = ctx["x"], ctx["y"]
    order = torch.from_numpy(rng.permutation(len(x)))
    for start in range(0, len(order), SPOT_BATCH):
        idx = order[start : start + SPOT_BATCH]
        if len(idx) < 2:
            continue
        xb = torch.from_numpy(_noisy(x[idx].numpy(), noise, rng, augment)).to(device)
        pred = net(xb)
        mask = torch.ones(len(idx), dtype=torch.bool, device=device)
        yield loss(pred[:, :, None, None], y[idx].to(device)[:, :, None, None], mask[:, None, None])


def set_batches(
    net: torch.nn.Module, sections: Sequence[Section], ctx: dict[str, Any], loss: Loss, *, batch_size: int,
    augment: bool, noise: float, rng: np.random.Generator, device: torch.device,
) -> Iterator[torch.Tensor]:
    """Whole slides as padded sets of spots with (augmented) grid positions."""
    import torch

    max_grid = int(net.hparams.get("max_grid", 128))
    order = rng.permutation(len(sections))
    d, g = sections[0].features.shape[1], sections[0].targets.shape[1]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        n = max(sections[i].n_obs for i in idx)
        x = np.zeros((len(idx), n, d), np.float32)
        y = np.zeros((len(idx), n, g), np.float32)
        pos = np.zeros((len(idx), n, 2), np.int64)
        pad = np.ones((len(idx), n), bool)
        m = np.zeros((len(idx), n), bool)
        for j, i in enumerate(idx):
            s = sections[i]
            r, c = _augment_coords(s, max_grid, augment=augment, square=ctx["square"], rng=rng)
            k = s.n_obs
            x[j, :k], y[j, :k] = _noisy(s.features, noise, rng, augment), s.targets
            pos[j, :k, 0], pos[j, :k, 1] = r, c
            pad[j, :k] = False
            m[j, :k] = s.in_tissue
        pred = net(torch.from_numpy(x).to(device), torch.from_numpy(pos).to(device), torch.from_numpy(pad).to(device))
        yt = torch.from_numpy(y).to(device)
        yield loss(pred.permute(0, 2, 1)[..., None], yt.permute(0, 2, 1)[..., None], torch.from_numpy(m).to(device)[..., None])


def graph_batches(
    net: torch.nn.Module, sections: Sequence[Section], ctx: dict[str, Any], loss: Loss, *, batch_size: int,
    augment: bool, noise: float, rng: np.random.Generator, device: torch.device,
) -> Iterator[torch.Tensor]:
    """One slide's spot graph per step."""
    import torch

    for i in rng.permutation(len(sections)):
        s = sections[i]
        pred = net(torch.from_numpy(_noisy(s.features, noise, rng, augment)).to(device), ctx["edges"][i].to(device))
        m = torch.from_numpy(s.in_tissue).to(device)
        yt = torch.from_numpy(s.targets).to(device)
        yield loss(pred.T[None, :, :, None], yt.T[None, :, :, None], m[None, :, None])


#: The batcher of each input kind (see :data:`hist_sd.model.INPUT_KINDS`).
BATCHERS = {"grid": grid_batches, "spot": spot_batches, "set": set_batches, "graph": graph_batches}
