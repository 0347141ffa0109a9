"""Losses over valid positions only (grid cells with a spot, non-padded spots).

Layouts: a 4-D ``pred`` is an image-like grid ``(B, C, H, W)`` with a ``(B, H, W)`` mask; any other rank has the
channels last, e.g. ``(N, C)`` with an ``(N,)`` mask or ``(B, N, C)`` with a ``(B, N)`` mask. Only the selected
positions enter the computation, so values at masked-out positions (padding, NaN included) can never change the
loss or its gradient.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["masked_bce_with_logits", "masked_correlation_loss", "masked_mse"]


def _select(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``(M, C)`` of ``pred`` and ``target`` at the positions where ``mask`` is True."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("`pred` and `target` must be torch tensors.")
    if pred.shape != target.shape:
        raise ValueError(
            f"`pred` and `target` must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}."
        )
    if pred.ndim < 2:
        raise ValueError(
            f"`pred` must have a channel dimension (at least 2-D), got shape {tuple(pred.shape)}."
        )
    if pred.ndim == 4:  # (B, C, H, W) -> (B, H, W, C)
        pred, target = pred.movedim(1, -1), target.movedim(1, -1)
    if mask is None:
        mask = torch.ones(pred.shape[:-1], dtype=torch.bool, device=pred.device)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"`mask` must be a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}.")
    if mask.shape != pred.shape[:-1]:
        want = "(B, H, W)" if target.ndim == 4 else "pred.shape[:-1]"
        raise ValueError(
            f"`mask` must have shape {want} = {tuple(pred.shape[:-1])}, got {tuple(mask.shape)}."
        )
    if not bool(mask.any()):
        raise ValueError("`mask` selects no position; the loss is undefined.")
    return pred[mask], target[mask]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over the masked positions and all channels.

    Parameters
    ----------
    pred
        Predictions, ``(B, C, H, W)`` or channels-last ``(..., C)``.
    target
        Targets of the same shape.
    mask
        Bool, ``(B, H, W)`` for a 4-D ``pred``, else ``pred.shape[:-1]``; ``True`` marks positions that count.
        ``None`` counts every position.

    Returns
    -------
    Scalar tensor: ``sum((pred - target)**2 over selected positions and channels) / (n_selected * C)``.
    """
    p, t = _select(pred, target, mask)
    return torch.mean((p - t) ** 2)


def masked_bce_with_logits(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    pos_weight: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary cross-entropy with logits, averaged over the masked positions and all channels.

    Parameters
    ----------
    pred
        Logits, ``(B, C, H, W)`` or channels-last ``(..., C)``.
    target
        Targets in [0, 1], same shape.
    mask
        Bool, ``(B, H, W)`` for a 4-D ``pred``, else ``pred.shape[:-1]``; ``None`` counts every position.
    pos_weight
        Weight of positive examples, a number or one value per channel (``(C,)``), as in
        :func:`torch.nn.functional.binary_cross_entropy_with_logits`.

    Returns
    -------
    Scalar tensor.
    """
    p, t = _select(pred, target, mask)
    if pos_weight is not None:
        pos_weight = torch.as_tensor(pos_weight, dtype=p.dtype, device=p.device)
        if pos_weight.ndim > 1 or (pos_weight.ndim == 1 and pos_weight.shape[0] not in (1, p.shape[-1])):
            raise ValueError(
                f"`pos_weight` must be a number or a ({p.shape[-1]},) tensor, got shape {tuple(pos_weight.shape)}."
            )
        if bool((pos_weight < 0).any()):
            raise ValueError("`pos_weight` must be non-negative.")
    return F.binary_cross_entropy_with_logits(p, t.to(p.dtype), pos_weight=pos_weight)


def masked_correlation_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over channels of ``1 - Pearson r`` between ``pred`` and ``target`` at the masked positions.

    Parameters
    ----------
    pred
        Predictions, ``(B, C, H, W)`` or channels-last ``(..., C)``.
    target
        Targets of the same shape.
    mask
        Bool, ``(B, H, W)`` for a 4-D ``pred``, else ``pred.shape[:-1]``; ``None`` counts every position.

    Returns
    -------
    Scalar tensor in ``[0, 2]``; 0 for a perfect (positively affine) prediction of every channel.
    """
    p, t = _select(pred, target, mask)
    p = p - p.mean(0)
    t = t - t.mean(0)
    r = (p * t).sum(0) / (p.norm(dim=0) * t.norm(dim=0) + 1e-6)
    return (1.0 - r).mean()
