"""HiST's application network: a small ConvNeXt-V2 on predicted gene maps, with masked pooling and outcome heads.

The input is a batch of per-slide maps ``(B, G, H, W)`` (genes x grid rows x grid columns) with a bool mask
``(B, H, W)`` of the cells that hold a tile. Every layer re-zeroes the cells outside the (downsampled) mask and the
maps are padded inside the network to a multiple of the total stride (32), so adding empty rows or columns at the
bottom or right of a map (padding a batch of slides to a common size) never changes a score: a padded cell looks
exactly like the convolutions' own zero padding, global response normalisation sums over cells (padding adds 0)
and the global average pool divides by the number of masked cells only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from hist_sd.nn._base import HParamsModule

__all__ = ["GRN", "ConvNeXtV2Block", "OutcomeConvNeXt", "OutcomeHead"]

#: Tasks of the outcome heads.
OUTCOME_TASKS: tuple[str, ...] = ("survival", "response")
#: Total stride of the network (stem 4 x three 2x2 downsamplings).
STRIDE = 32


def _layer_norm_cf(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """LayerNorm over the channels of a channels-first ``(B, C, H, W)`` tensor."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p`` (training only)."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class GRN(nn.Module):
    """Global response normalisation of ConvNeXt-V2 on channels-last ``(B, H, W, C)`` input.

    ``x + gamma * x * N(x) + beta`` with ``N = ||x||_hw / mean_c ||x||_hw``; the L2 norm over cells is a sum, so
    cells that are zero (padding) do not change it.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.sqrt((x * x).sum(dim=(1, 2), keepdim=True) + 1e-12)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    """Depthwise 7x7 conv, LayerNorm, pointwise MLP (4x, GELU) with GRN, drop path; masked residual."""

    def __init__(self, dim: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.drop_path = float(drop_path)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, C, H, W)`` zero outside ``mask`` ``(B, 1, H, W)`` (float); the output is too."""
        m = mask.permute(0, 2, 3, 1)
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = F.gelu(self.pwconv1(self.norm(y))) * m
        y = self.pwconv2(self.grn(y)) * m
        return x + _drop_path(y.permute(0, 3, 1, 2), self.drop_path, self.training)


class OutcomeHead(HParamsModule):
    """The outcome head: pooled features ``++`` clinical covariates -> a risk (survival) or class logits (response).

    Survival: two linear layers with a GELU (and dropout) between them (the reference code stacks two linear
    layers with no non-linearity, which is one linear map); ``hidden=0`` gives a single linear layer (a linear Cox
    model). Response: one linear layer to ``n_classes`` logits.

    Parameters
    ----------
    in_features
        Dimension of the image (or pseudo-bulk) features.
    n_clinical
        Dimension of the encoded clinical covariates (one-hot columns); 0 for none.
    task
        ``"survival"`` (one log-hazard) or ``"response"`` (class logits).
    n_classes
        Number of response classes (``task="response"``).
    hidden
        Width of the survival head's hidden layer; 0 for a linear head.
    dropout
        Dropout before the last layer.
    """

    def __init__(self, in_features: int, *, n_clinical: int = 0, task: str = "survival", n_classes: int = 2,
                 hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self._save_hparams(ints=("in_features", "n_classes"), probs=("dropout",),
                           minimum={"n_classes": 2})
        for name, value in (("n_clinical", n_clinical), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}.")
        if task not in OUTCOME_TASKS:
            raise ValueError(f"`task` must be one of {OUTCOME_TASKS}, got {task!r}.")
        d = in_features + n_clinical
        if task == "response":
            self.layers = nn.Sequential(nn.Dropout(dropout), nn.Linear(d, n_classes))
        elif hidden == 0:
            self.layers = nn.Sequential(nn.Linear(d, 1))
        else:
            self.layers = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, clinical: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``x`` ``(B, in_features)`` and ``clinical`` ``(B, n_clinical)`` -> ``{"logits": (B, 1 | n_classes)}``."""
        n_clin = self.hparams["n_clinical"]
        if n_clin:
            if clinical is None or clinical.shape != (x.shape[0], n_clin):
                raise ValueError(f"`clinical` must have shape ({x.shape[0]}, {n_clin}), got "
                                 f"{None if clinical is None else tuple(clinical.shape)}.")
            x = torch.cat([x, clinical.to(x.dtype)], dim=1)
        return {"logits": self.layers(x)}


class OutcomeConvNeXt(HParamsModule):
    """ConvNeXt-V2 on predicted gene maps with masked pooling and a survival or response head (HiST's application).

    Stem: 4x4 conv with stride 4 and LayerNorm; 4 stages of :class:`ConvNeXtV2Block` separated by LayerNorm +
    2x2 conv with stride 2; masked global average pooling and a final LayerNorm; then :class:`OutcomeHead` on the
    pooled features joined with the clinical covariates.

    Parameters
    ----------
    in_channels
        Number of genes (map channels).
    n_clinical, task, n_classes, hidden, dropout
        As :class:`OutcomeHead`.
    dims
        Channels of the 4 stages (ConvNeXt-V2 atto: ``(40, 80, 160, 320)``).
    depths
        Blocks per stage (atto: ``(2, 2, 6, 2)``).
    drop_path
        Largest stochastic-depth rate (linearly increasing over the blocks).
    """

    def __init__(self, in_channels: int, *, n_clinical: int = 0, task: str = "survival", n_classes: int = 2,
                 dims: Sequence[int] = (32, 64, 128, 256), depths: Sequence[int] = (1, 1, 2, 1),
                 drop_path: float = 0.1, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self._save_hparams(ints=("in_channels",), probs=("drop_path",))
        dims, depths = [int(d) for d in dims], [int(d) for d in depths]
        if len(dims) != 4 or len(depths) != 4 or min(dims) < 1 or min(depths) < 0:
            raise ValueError(f"`dims` and `depths` must list 4 stages (dims >= 1, depths >= 0), got {dims}, {depths}.")
        self.stem = nn.Conv2d(in_channels, dims[0], kernel_size=4, stride=4)
        self.stem_norm = nn.LayerNorm(dims[0], eps=1e-6)
        self.down_norms = nn.ModuleList([nn.LayerNorm(dims[i], eps=1e-6) for i in range(3)])
        self.downs = nn.ModuleList([nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2) for i in range(3)])
        rates = torch.linspace(0, float(drop_path), max(sum(depths), 1)).tolist()
        offsets = [sum(depths[:i]) for i in range(4)]
        self.stages = nn.ModuleList([
            nn.ModuleList([ConvNeXtV2Block(dims[i], rates[offsets[i] + j]) for j in range(depths[i])])
            for i in range(4)
        ])
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = OutcomeHead(dims[-1], n_clinical=n_clinical, task=task, n_classes=n_classes, hidden=hidden,
                                dropout=dropout)

    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Masked-pooled features ``(B, dims[-1])`` of maps ``(B, G, H, W)`` and their mask ``(B, H, W)``."""
        if x.ndim != 4 or x.shape[1] != self.hparams["in_channels"]:
            raise ValueError(f"`x` must be (B, {self.hparams['in_channels']}, H, W) gene maps, got {tuple(x.shape)}.")
        b, _, h, w = x.shape
        if mask is None:
            mask = torch.ones(b, h, w, dtype=torch.bool, device=x.device)
        if mask.shape != (b, h, w):
            raise ValueError(f"`mask` must have shape ({b}, {h}, {w}), got {tuple(mask.shape)}.")
        if not bool(mask.flatten(1).any(dim=1).all()):
            raise ValueError("`mask`: a map has no valid cell; every slide needs at least one tile.")
        ph, pw = -h % STRIDE, -w % STRIDE  # pad bottom/right to the total stride: extra padding is then inert
        m = F.pad(mask[:, None].to(x.dtype), (0, pw, 0, ph))
        x = F.pad(x, (0, pw, 0, ph)) * m
        m = F.max_pool2d(m, 4)
        x = _layer_norm_cf(self.stem(x), self.stem_norm) * m
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = _layer_norm_cf(x, self.down_norms[i - 1]) * m
                m = F.max_pool2d(m, 2)
                x = self.downs[i - 1](x) * m
            for block in stage:
                x = block(x, m) * m
        pooled = (x * m).sum(dim=(2, 3)) / m.sum(dim=(2, 3)).clamp_min(1.0)
        return self.norm(pooled)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                clinical: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``{"logits": (B, 1) log-hazards or (B, n_classes) logits, "features": (B, dims[-1])}``."""
        feats = self.features(x, mask)
        return {**self.head(feats, clinical), "features": feats}
