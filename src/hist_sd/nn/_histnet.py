"""HiSTNet: the HiST U-Net with multi-scale attention gates and a ConvMixer bottleneck (Li et al., Adv. Sci. 2026).

Reading of the paper and of the authors' published implementation (a CMU-Net variant), followed here:

* Input: a slide as a feature grid ``(B, C, H, W)``, one encoder-feature vector per spot / tile (C = 768 for
  CTransPath, 1280 for EfficientNet-lite0). The paper feeds these features directly into the first encoder level;
  ``in_proj`` (off by default) adds a 1x1 conv + BN + ReLU reducing them first, which is cheaper on a CPU.
* Encoder: ``depth`` levels, each two (conv3x3 + BN + ReLU), widths ``base_width * 2**i`` (64..1024 in the paper),
  2x2 max-pool between levels.
* Bottleneck: after the deepest two-conv block, ``convmixer_depth`` ConvMixer blocks, each
  ``x + BN(GELU(depthwise kxk(x)))`` followed by ``BN(GELU(pointwise 1x1(.)))``.
  ``convmixer=False`` (the ablation) keeps only the plain two-conv block.
* Skip connections (the ``depth - 1`` shallower levels) pass through a multi-scale attention gate. In the HiST
  implementation the gate is *self-gated*: the skip features are their own gating signal (no decoder signal is
  used). Three branches -- 1x1 conv, 3x3 conv, dilated 3x3 conv (dilation 2), each followed by BN -- are applied to
  the skip features, concatenated, passed through ReLU and a 1x1 conv + BN + sigmoid that gives a channel-wise
  map ``a`` in [0, 1]; the gated skip is ``x * (1 + a)`` (the map multiplies the features, with a residual
  path so that a closed gate does not erase the skip). ``attention=False`` (the ablation) uses plain skips.
* Decoder: 2x upsampling followed by conv3x3 + BN + ReLU that halves the channels (``upsample="nearest"`` as in
  the authors' code, or ``"bilinear"``; ``"transpose"`` uses a 2x2 transposed conv instead), concatenation with
  the (gated) skip and a two-conv block, mirroring the encoder.
* Head: a 1x1 conv to ``out_channels`` (genes, or 1 tumour logit). No activation: train expression with a
  (masked) MSE and tumour masks with BCE-with-logits.
* ``dropout`` (0 in the paper) adds channel dropout after the bottleneck and before the head.
* ``spot_skip`` (off in the paper) adds a per-spot linear path, a 1x1 conv from the input features straight to
  the output, to the U-Net's output: the network then predicts a spot's own signal plus a context correction,
  instead of rebuilding every spot's value from a smooth multi-level field.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from hist_sd.nn._base import HParamsModule, check_channels

__all__ = ["ConvMixerBlock", "DoubleConv", "HiSTNet", "MultiScaleAttentionGate"]

_UPSAMPLE = ("nearest", "bilinear", "transpose")


class DoubleConv(nn.Sequential):
    """Two (conv3x3 + BatchNorm + ReLU) layers: one U-Net level."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ConvMixerBlock(nn.Module):
    """One ConvMixer block: residual depthwise ``kernel x kernel`` conv, then pointwise 1x1 conv (GELU + BN each).

    Parameters
    ----------
    channels
        Number of channels (kept).
    kernel
        Size of the depthwise kernel (odd, so that the spatial size is kept).
    """

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.depthwise = nn.Sequential(
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels),
            nn.GELU(),
            nn.BatchNorm2d(channels),
        )
        self.pointwise = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.GELU(), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block; the shape is kept."""
        return self.pointwise(x + self.depthwise(x))


class MultiScaleAttentionGate(nn.Module):
    """Self-gated multi-scale attention gate on a skip connection (HiST / CMU-Net reading).

    Parameters
    ----------
    channels
        Channels of the skip features (kept).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pointwise = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))
        self.local = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.dilated = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=2, dilation=2), nn.BatchNorm2d(channels)
        )
        self.vote = nn.Sequential(
            nn.Conv2d(3 * channels, channels, 1), nn.BatchNorm2d(channels), nn.Sigmoid()
        )

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map ``a`` in [0, 1], same shape as ``x``."""
        branches = torch.cat([self.pointwise(x), self.local(x), self.dilated(x)], dim=1)
        return self.vote(torch.relu(branches))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gated skip features ``x * (1 + a)``."""
        return x * (1.0 + self.gate(x))


class _Up(nn.Sequential):
    """2x upsampling that also maps ``in_channels`` to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, mode: str) -> None:
        if mode == "transpose":
            layers: list[nn.Module] = [nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)]
        else:
            up = nn.Upsample(scale_factor=2, mode=mode, align_corners=False if mode == "bilinear" else None)
            layers = [up, nn.Conv2d(in_channels, out_channels, 3, padding=1)]
        super().__init__(*layers, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class HiSTNet(HParamsModule):
    """HiST's U-Net on a grid of histology features.

    See the module docstring for the exact architecture and how it follows the paper.

    Parameters
    ----------
    in_channels
        Feature channels of the input grid (encoder feature dimension).
    out_channels
        Output channels (number of genes, or 1 for a tumour logit).
    base_width
        Width of the first level; level ``i`` has ``base_width * 2**i`` channels (paper: 64).
    depth
        Number of encoder levels (paper: 5). Inputs must have ``H`` and ``W`` multiples of ``2**(depth - 1)``.
    convmixer_depth
        Number of ConvMixer blocks in the bottleneck (paper: 7).
    convmixer_kernel
        Odd depthwise kernel size of the ConvMixer blocks (paper: 7).
    attention
        Use multi-scale attention gates on the skip connections (``False``: the paper's plain-skip ablation).
    convmixer
        Use the ConvMixer bottleneck (``False``: the paper's plain two-conv bottleneck ablation).
    dropout
        Channel dropout after the bottleneck and before the head (paper: 0).
    in_proj
        If given, a 1x1 conv + BN + ReLU first reduces the input to this many channels (not in the paper).
    spot_skip
        Add a per-spot linear path (a 1x1 conv from the input to the output) to the U-Net's output.
    upsample
        Decoder upsampling: ``"nearest"`` (as in the authors' code) or ``"bilinear"`` followed by a 3x3 conv,
        or ``"transpose"`` (2x2 transposed conv).

    Examples
    --------
    >>> import torch, hist_sd as hs
    >>> net = hs.nn.HiSTNet.from_preset("tiny", 32, 10)
    >>> net(torch.randn(2, 32, 8, 8)).shape
    torch.Size([2, 10, 8, 8])
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"base_width": 64, "depth": 5, "convmixer_depth": 7, "convmixer_kernel": 7},
        "small": {"base_width": 16, "depth": 5, "convmixer_depth": 7, "convmixer_kernel": 7},
        "compact": {"base_width": 32, "depth": 3, "convmixer_depth": 3, "convmixer_kernel": 7, "dropout": 0.1,
                    "spot_skip": True},
        "tiny": {"base_width": 4, "depth": 3, "convmixer_depth": 2, "convmixer_kernel": 3},
    }

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        base_width: int = 64,
        depth: int = 5,
        convmixer_depth: int = 7,
        convmixer_kernel: int = 7,
        attention: bool = True,
        convmixer: bool = True,
        dropout: float = 0.0,
        in_proj: int | None = None,
        upsample: str = "nearest",
        spot_skip: bool = False,
    ) -> None:
        super().__init__()
        self._save_hparams(
            ints=("in_channels", "out_channels", "base_width", "depth", "convmixer_depth", "convmixer_kernel", "in_proj"),
            probs=("dropout",), minimum={"depth": 2}, optional=("in_proj",),
        )
        if convmixer_kernel % 2 == 0:
            raise ValueError(f"`convmixer_kernel` must be odd, got {convmixer_kernel}.")
        if upsample not in _UPSAMPLE:
            raise ValueError(f"`upsample` must be one of {_UPSAMPLE}, got {upsample!r}.")
        for name, flag in (("attention", attention), ("convmixer", convmixer), ("spot_skip", spot_skip)):
            if not isinstance(flag, bool):
                raise ValueError(f"`{name}` must be a bool, got {flag!r}.")
        self.in_channels = in_channels
        self.depth = depth
        widths = [base_width * 2**i for i in range(depth)]

        self.in_proj: nn.Module = (
            nn.Sequential(nn.Conv2d(in_channels, in_proj, 1), nn.BatchNorm2d(in_proj), nn.ReLU(inplace=True))
            if in_proj is not None
            else nn.Identity()
        )
        prev = in_proj if in_proj is not None else in_channels
        self.encoder = nn.ModuleList()
        for w in widths:
            self.encoder.append(DoubleConv(prev, w))
            prev = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck: nn.Module = (
            nn.Sequential(*(ConvMixerBlock(widths[-1], convmixer_kernel) for _ in range(convmixer_depth)))
            if convmixer
            else nn.Identity()
        )
        self.gates: nn.ModuleList | None = (
            nn.ModuleList(MultiScaleAttentionGate(w) for w in widths[:-1]) if attention else None
        )
        # decoder, listed from the deepest level up: ups[j] maps widths[j+1] -> widths[j]
        self.ups = nn.ModuleList(_Up(widths[i + 1], widths[i], upsample) for i in range(depth - 1))
        self.decoder = nn.ModuleList(DoubleConv(2 * widths[i], widths[i]) for i in range(depth - 1))
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.spot_skip = nn.Conv2d(in_channels, out_channels, 1) if spot_skip else None

    @property
    def multiple(self) -> int:
        """``H`` and ``W`` of the input must be multiples of this (``2**(depth - 1)``)."""
        return 2 ** (self.depth - 1)

    @classmethod
    def from_preset(cls, name: str, in_channels: int, out_channels: int, **overrides: Any) -> HiSTNet:
        """Build a HiSTNet from a named preset.

        Parameters
        ----------
        name
            ``"paper"`` (base width 64, 5 levels, 7 ConvMixer blocks of kernel 7: the published model),
            ``"small"`` (base width 16, otherwise as the paper; trains on a CPU), ``"compact"`` (base width 32,
            3 levels, 3 ConvMixer blocks of kernel 7, dropout 0.1, the per-spot skip: the default of
            :func:`hist_sd.tl.train`, which generalises best across patients when trained on a few slides of spot
            features) or ``"tiny"``
            (for tests).
        in_channels
            Feature channels of the input grid.
        out_channels
            Output channels.
        **overrides
            Any other constructor keyword, overriding the preset.

        Returns
        -------
        The (untrained) model.
        """
        if name not in cls.PRESETS:
            raise ValueError(f"Unknown HiSTNet preset {name!r}; expected one of {sorted(cls.PRESETS)}.")
        return cls(in_channels, out_channels, **{**cls.PRESETS[name], **overrides})

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` if ``x`` is not a ``(B, in_channels, H, W)`` grid with a valid ``H`` and ``W``."""
        check_channels("x", x, 4, self.in_channels, "(B, C, H, W)")
        h, w = x.shape[-2:]
        m = self.multiple
        if h % m or w % m or h == 0 or w == 0:
            raise ValueError(
                f"HiSTNet with depth={self.depth} needs H and W to be positive multiples of {m} "
                f"(2**(depth - 1)), got H={h}, W={w}; pad the grid (e.g. hist_sd.pp.to_grid pads)."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict a ``(B, out_channels, H, W)`` map from a ``(B, in_channels, H, W)`` feature grid."""
        self.check_input(x)
        h = self.in_proj(x)
        skips = []
        for i, block in enumerate(self.encoder):
            if i > 0:
                h = self.pool(h)
            h = block(h)
            skips.append(h)
        h = self.drop(self.bottleneck(skips.pop()))
        for i in reversed(range(self.depth - 1)):
            skip = skips[i] if self.gates is None else self.gates[i](skips[i])
            h = self.decoder[i](torch.cat([skip, self.ups[i](h)], dim=1))
        out = self.head(self.drop(h))
        return out if self.spot_skip is None else out + self.spot_skip(x)
