"""A per-spot linear map: the fitted form of the PCA + ridge baseline (HEST-benchmark protocol)."""

from __future__ import annotations

import torch
from torch import nn

from hist_sd.nn._base import HParamsModule

__all__ = ["SpotLinear"]


class SpotLinear(HParamsModule):
    """Linear map from spot features to outputs, ``(N, C) -> (N, out)``.

    ``hs.tl.train(method="ridge")`` fits PCA + ridge in closed form and folds both into this layer, so the
    baseline is saved, loaded and applied like every other model.

    Parameters
    ----------
    in_channels
        Feature dimension.
    out_channels
        Number of outputs (genes).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self._save_hparams(ints=("in_channels", "out_channels"))
        self.linear = nn.Linear(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``(N, out)`` for features ``(N, C)``."""
        if x.ndim != 2 or x.shape[1] != self.hparams["in_channels"]:
            raise ValueError(f"SpotLinear expects (N, {self.hparams['in_channels']}) features, got {tuple(x.shape)}.")
        return self.linear(x)
