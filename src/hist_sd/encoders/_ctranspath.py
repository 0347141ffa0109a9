"""CTransPath (Wang et al., Med. Image Anal. 2022): a Swin-T transformer whose patch embedding is a small CNN.

Plain torch, no timm. Parameter names follow the public ``ctranspath.pth`` checkpoint, which was saved from
timm 0.5.4's ``swin_tiny_patch4_window7_224`` with ``embed_layer=ConvStem`` and ``head = Identity``:
``patch_embed.proj.{0,1,3,4,6}``, ``patch_embed.norm``, ``layers.{i}.blocks.{j}.{norm1,attn.qkv,attn.proj,
attn.relative_position_bias_table,norm2,mlp.fc1,mlp.fc2}``, ``layers.{i}.downsample.{norm,reduction}``
(patch merging at the end of stages 0-2) and ``norm``. The buffers ``relative_position_index`` and
``attn_mask`` are recomputed here and ignored in the checkpoint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger("hist_sd")

__all__ = ["CTransPath", "load_ctranspath_state"]


class ConvStem(nn.Module):
    """Two stride-2 3x3 conv/BN/ReLU layers and a 1x1 projection: ``(B, 3, H, W)`` -> ``(B, H/4 * W/4, C)``."""

    def __init__(self, embed_dim: int = 96, in_chans: int = 3) -> None:
        super().__init__()
        if embed_dim % 8:
            raise ValueError(f"`embed_dim` must be a multiple of 8, got {embed_dim}.")
        c1, c2 = embed_dim // 8, embed_dim // 4
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, c1, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c2, embed_dim, 1),
        )
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class Mlp(nn.Module):
    """Linear-GELU-Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _relative_position_index(window: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ``window x window`` windows with a learnt relative position bias."""

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.window, self.heads = window, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", _relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.reshape(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.reshape(bw // nw, nw, self.heads, n, n) + mask[None, :, None]
            attn = attn.reshape(-1, self.heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    b, h, wd, c = x.shape
    x = x.reshape(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def _unwindows(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    b = x.shape[0] // ((h // w) * (wd // w))
    x = x.reshape(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, wd, -1)


class SwinBlock(nn.Module):
    """Swin transformer block: (shifted) window attention and an MLP, both pre-norm residual."""

    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        if resolution <= window:  # the window covers the whole map: no shift
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = self._mask() if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def _mask(self) -> torch.Tensor:
        r, w, s = self.resolution, self.window, self.shift
        region = torch.zeros(1, r, r, 1)
        cnt = 0
        for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
                region[:, hs, ws, :] = cnt
                cnt += 1
        win = _windows(region, w).squeeze(-1)
        diff = win[:, None, :] - win[:, :, None]
        return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        r = self.resolution
        h = self.norm1(x).reshape(b, r, r, c)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        h = _unwindows(self.attn(_windows(h, self.window), self.attn_mask), self.window, r, r)
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + h.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Concatenate 2x2 neighbours (4C), normalise, project to 2C: halves the resolution."""

    def __init__(self, dim: int, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        r = self.resolution
        x = x.reshape(b, r, r, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    """``depth`` Swin blocks (alternating shifts), then patch merging unless it is the last stage."""

    def __init__(
        self, dim: int, resolution: int, depth: int, heads: int, window: int, mlp_ratio: float, downsample: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if j % 2 == 0 else window // 2, mlp_ratio) for j in range(depth)
        )
        self.downsample = PatchMerging(dim, resolution) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class CTransPath(nn.Module):
    """CTransPath feature extractor: ``(B, 3, 224, 224)`` ImageNet-normalised images -> ``(B, 768)``.

    Parameters
    ----------
    img_size
        Input side in pixels (224 for the published weights; must be divisible by ``4 * 2**3 * window``).
    embed_dim
        Channels after the stem (doubled at each of the three patch mergings).
    depths, heads
        Blocks and attention heads per stage.
    window
        Attention window side.
    mlp_ratio
        Hidden width of the MLPs relative to the channels.
    """

    def __init__(
        self,
        img_size: int = 224,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        heads: Sequence[int] = (3, 6, 12, 24),
        window: int = 7,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if img_size % (4 * 2 ** (len(depths) - 1)):
            raise ValueError(f"`img_size` must be divisible by {4 * 2 ** (len(depths) - 1)}, got {img_size}.")
        self.img_size = img_size
        self.patch_embed = ConvStem(embed_dim)
        res, dim = img_size // 4, embed_dim
        stages = []
        for i, (depth, nh) in enumerate(zip(depths, heads, strict=True)):
            last = i == len(depths) - 1
            stages.append(SwinStage(dim, res, depth, nh, window, mlp_ratio, downsample=not last))
            if not last:
                res, dim = res // 2, dim * 2
        self.layers = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, num_features)``."""
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"CTransPath expects {self.img_size}x{self.img_size} inputs, got {tuple(x.shape[-2:])}.")
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return self.norm(x).mean(dim=1)


def load_ctranspath_state(model: CTransPath, state: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> None:
    """Load a TransPath ``ctranspath.pth`` state dict strictly (recomputed buffers and a classifier head dropped).

    Parameters
    ----------
    model
        The module to fill.
    state
        The checkpoint's ``"model"`` entry (a flat state dict).
    path
        File name, for error messages.
    """
    from hist_sd.encoders._checkpoint import load_strict

    skip = ("relative_position_index", "attn_mask")
    clean = {k: v for k, v in state.items() if not k.endswith(skip)}
    head = [k for k in clean if k.startswith("head.")]
    if head:
        logger.info("ctranspath: ignoring the classifier head in the checkpoint (%s).", ", ".join(head))
        clean = {k: v for k, v in clean.items() if not k.startswith("head.")}
    load_strict(model, clean, "ctranspath", path if path is not None else "<state dict>")
