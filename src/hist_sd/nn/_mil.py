"""Whole-slide (multiple-instance) survival networks and a genomic baseline.

A slide is a *bag* of instance features (one vector per region / patch). Bag models take ``forward(x, mask=None)``
with ``x`` a float ``(B, N, D)`` tensor of bags padded to a common ``N`` and ``mask`` a bool ``(B, N)`` tensor,
``True`` at real instances (``None``: every instance is real). Padded instances never change an output: they are
excluded from every softmax, pooling and top-k, and their features are zeroed after the input projections (so even
non-finite padding cannot leak). Outputs are dicts; ``"logits"`` is ``(B, out_channels)`` (e.g. the discrete-time
hazard logits of a survival head).

* :class:`GHANet`: G-HANet (Wang et al., IEEE TMI 2025): genomics-guided hyper-attention network; genomic
  profiles are needed only as *training targets* (reconstruction), prediction uses the slide alone.
* :class:`ABMIL`: gated-attention MIL (Ilse et al., ICML 2018; CLAM style).
* :class:`BagTransformer`: TransMIL-style transformer MIL with a CLS token.
* :class:`SNN`: self-normalising network on a genomic vector (Klambauer et al., NeurIPS 2017; PORPOISE / MCAT).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hist_sd.nn._base import HParamsModule, check_channels, check_int

__all__ = ["ABMIL", "GHANet", "SNN", "BagTransformer", "hyperedge_size"]


# --- shared pieces -------------------------------------------------------------------------------------------


def _check_bags(x: torch.Tensor, mask: torch.Tensor | None, in_channels: int) -> torch.Tensor:
    """Check ``(B, N, D)`` bags and their ``(B, N)`` mask; return the mask (all ``True`` when ``None``)."""
    check_channels("x", x, 3, in_channels, "(B, N, C)")
    if not x.is_floating_point():
        raise ValueError(f"`x` must be a floating-point tensor, got {x.dtype}.")
    b, n = x.shape[:2]
    if mask is None:
        mask = torch.ones(b, n, dtype=torch.bool, device=x.device)
    elif not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != (b, n):
        got = (
            f"{mask.dtype} of shape {tuple(mask.shape)}"
            if isinstance(mask, torch.Tensor)
            else type(mask).__name__
        )
        raise ValueError(f"`mask` must be a ({b}, {n}) bool tensor (True = real instance), got {got}.")
    empty = (~mask.any(dim=1)).nonzero().flatten()
    if empty.numel():
        raise ValueError(
            f"`mask` has a bag with no instances at batch index {int(empty[0])} "
            f"({empty.numel()} empty bag(s) in all); every bag needs at least one real instance."
        )
    return mask


def _masked_softmax(logits: torch.Tensor, keep: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over the ``keep`` entries (exactly 0 elsewhere); every slice must keep at least one entry."""
    return torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=dim)


def _per_instance(fn: Any, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``fn`` applied to the real instances only, ``(B, N, ...)`` with zeros at padding.

    Padding then costs no compute (projections, dropout, gates run on the packed real instances) and cannot leak
    through ``0 * inf``.
    """
    y = fn(x[mask])
    return y.new_zeros(*mask.shape, *y.shape[1:]).index_put((mask,), y)


class _GatedAttention(nn.Module):
    """Gated attention scores ``Linear(tanh(Linear(h)) * sigmoid(Linear(h)))`` -> softmax over real instances."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.tanh_branch = nn.Linear(dim, hidden)
        self.gate_branch = nn.Linear(dim, hidden)
        self.score = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim)`` -> ``(B, N)`` weights summing to 1 over each bag's real instances."""
        scores = _per_instance(self._score, h, mask)
        return _masked_softmax(scores, mask)

    def _score(self, h: torch.Tensor) -> torch.Tensor:
        return self.score(torch.tanh(self.tanh_branch(h)) * torch.sigmoid(self.gate_branch(h))).squeeze(-1)


class _Attention(nn.Module):
    """Multi-head (cross-)attention without pre-norm: bias-free q/k/v, output ``Linear(heads * dim_head, dim)``."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.reshape(b, n, self.heads, -1).transpose(1, 2)  # (B, heads, n, dim_head)

    def forward(
        self, q: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries ``(B, T, dim)`` attend to ``ctx`` ``(B, N, dim)`` (``mask`` ``(B, N)``: real keys).

        Returns the output ``(B, T, dim)`` and the pre-softmax logits ``(B, heads, T, N)`` (unmasked).
        """
        qh = self._split(self.to_q(q))  # (B, heads, T, dim_head)
        b, _, t, _ = qh.shape
        if ctx.shape[1] <= t * self.heads:
            kh, vh = self._split(self.to_k(ctx)), self._split(self.to_v(ctx))
            logits = qh @ kh.transpose(-1, -2) * self.scale
            out = self._softmax(logits, mask) @ vh
        else:
            # Few queries, many instances: fold the key and value maps into the queries and the pooled context
            # (q.(W_k c) = (W_k^T q).c and sum_n a_n W_v c_n = W_v sum_n a_n c_n), the same attention at
            # heads * T * dim instead of 2 * dim * heads * dim_head multiply-adds per instance.
            wk = self.to_k.weight.view(self.heads, -1, ctx.shape[-1])  # (heads, dim_head, dim)
            wv = self.to_v.weight.view(self.heads, -1, ctx.shape[-1])
            h, c = self.heads, ctx.shape[-1]
            qk = torch.einsum("bhtd,hdc->bhtc", qh, wk).reshape(b, h * t, c)
            logits = (qk @ ctx.transpose(1, 2)).view(b, h, t, -1) * self.scale  # (B, heads, T, N)
            pooled = self._softmax(logits, mask).view(b, h * t, -1) @ ctx  # (B, heads * T, dim)
            out = torch.einsum("bhtc,hdc->bhtd", pooled.view(b, h, t, c), wv)
        return self.to_out(out.transpose(1, 2).reshape(b, t, -1)), logits

    @staticmethod
    def _softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            return torch.softmax(logits, dim=-1)
        return _masked_softmax(logits, mask[:, None, None, :].expand_as(logits))


class _GEGLU(nn.Module):
    """GEGLU feed-forward: ``Linear(dim, 2 * mult * dim)`` -> ``x * gelu(gate)`` -> ``Linear`` -> ``Dropout``."""

    def __init__(self, dim: int, dropout: float, mult: int = 4) -> None:
        super().__init__()
        self.proj_in = nn.Linear(dim, 2 * mult * dim)
        self.proj_out = nn.Linear(mult * dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dim)`` -> ``(..., dim)``."""
        a, gate = self.proj_in(x).chunk(2, dim=-1)
        return self.drop(self.proj_out(a * F.gelu(gate)))


class _PreNormCrossAttention(nn.Module):
    """``Attention(LN(query), LN(context))`` with separate LayerNorms for queries and context."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_ctx = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads, dim_head)

    def forward(
        self, q: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`_Attention.forward`."""
        return self.attn(self.norm_q(q), self.norm_ctx(ctx), mask)


class _PreNormFF(nn.Module):
    """``GEGLU(LN(x))`` (the caller adds the residual)."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ff = _GEGLU(dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dim)`` -> ``(..., dim)``."""
        return self.ff(self.norm(x))


class _EmptyHead(nn.Module):
    """Reconstruction head of a gene family with no genes: ``(B, dim)`` -> ``(B, 0)`` (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return an empty ``(B, 0)`` tensor."""
        return x.new_zeros(x.shape[0], 0)


def hyperedge_size(n_instances: torch.Tensor | int, ratio: float) -> torch.Tensor:
    """Number of instances in a G-HANet hyperedge: ``max(1, floor(ratio * n))``.

    A tolerance of ``1e-6`` guards the floor against float error (``0.29 * 100`` counts as 29, not 28).

    Parameters
    ----------
    n_instances
        Real instances per bag (an int or a ``(B,)`` integer tensor).
    ratio
        Fraction of a bag's instances in each hyperedge, in ``(0, 1]``.

    Returns
    -------
    ``(B,)`` (or 0-D) long tensor, between 1 and ``n_instances``.
    """
    n = torch.as_tensor(n_instances)
    k = torch.floor(n.double() * float(ratio) + 1e-6).long()
    return torch.minimum(k.clamp(min=1), n.long().clamp(min=1))


def _topk_hyperedges(logits: torch.Tensor, mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """Hyperedge weights: per bag and token, a softmax of ``logits`` over its top-k real instances.

    ``logits`` ``(B, T, N)``; ``k = hyperedge_size(real instances of the bag, ratio)``. Gradient is stopped.
    """
    logits = logits.detach()
    k = hyperedge_size(mask.sum(dim=1), ratio).to(logits.device)  # (B,)
    k_max = int(k.max())
    masked = logits.masked_fill(~mask[:, None, :], float("-inf"))
    idx = masked.topk(k_max, dim=-1).indices  # (B, T, k_max), sorted by logit
    take = torch.arange(k_max, device=logits.device)[None, None, :] < k[:, None, None]
    keep = torch.zeros_like(masked, dtype=torch.bool).scatter(-1, idx, take.expand_as(idx))
    return _masked_softmax(logits, keep)


def _check_sizes(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(f"`{name}` must be a sequence of integers, got {value!r}.")
    return tuple(int(check_int(f"{name}[{i}]", v, minimum=0)) for i, v in enumerate(value))


# --- G-HANet -------------------------------------------------------------------------------------------------


class GHANet(HParamsModule):
    """G-HANet: genomics-guided hyper-attention network for survival from a whole slide (Wang et al., TMI 2025).

    Rebuilt from the paper's description (no code of the reference implementation).

    *Cross-modal associating branch* (CAB, ``cab=True``). Instances are projected (``Linear`` + ReLU + dropout) to
    ``h``; ``T = len(omic_sizes)`` learned tokens, one per genomic family, query them in two rounds of pre-norm
    cross-attention (``heads`` heads of ``dim_head``, bias-free q/k/v), each followed by a pre-norm GEGLU
    feed-forward::

        r  = CA0(LN(tokens), LN(h));      r = FF0(LN(r)) + r
        r2 = CA1(LN(tokens + r), LN(h));  r = FF1(LN(r2)) + r2;   tokens_out = LN(r)

    The second round's pre-softmax logits, averaged over heads, are the token-instance *association* ``(B, T, N)``.
    Each token has a head ``Linear-LN-ELU-Dropout-Linear`` reconstructing its family's genomic profile (the
    ``"genomics"`` output, a training target only; a family of size 0 gives a ``(B, 0)`` tensor).
    ``shared_cross_attention=True`` is a legacy flag reproducing the reference implementation, whose second round
    reuses the first round's cross-attention (with its LayerNorms); the feed-forwards stay separate.

    *Hyper-attention survival branch* (HSB). Instances get their own projection (``Linear-LN-ReLU-Dropout``) to
    ``h'``. Gated attention gives morphology weights (softmax over the bag's real instances, ``(B, 1, N)``, shared
    by all tokens). For each token a hyperedge joins the top ``k = max(1, floor(ratio * n_b))`` real instances of
    its association logits (:func:`hyperedge_size`; ``n_b`` real instances in bag ``b``) with weights the softmax
    of the logits over those ``k`` instances, *detached*: the survival loss never trains the CAB through the
    hyperedges, only through the CAB tokens. Incidence ``H = (morphology + hyperedge) / 2`` ``(B, T, N)``;
    hyperedge features ``e = H @ h'``, ``e = ReLU(LN(Linear(ReLU(LN(Linear(e)))))) + e``. Then
    ``tokens = (e + tokens_out) / 2``, ``tokens = SelfAttn(tokens) + tokens`` (no pre-norm),
    ``tokens = FF(LN(tokens)) + tokens`` (GEGLU), a shared ``Linear(dim, 256)-LN-ReLU-Dropout`` per token, and a
    ``Linear(T * 256, out_channels)`` on the flattened tokens gives the logits.

    Ablations: ``cab=False`` drops the CAB, the reconstruction and the hyperedges (``hyperedges`` is then ignored):
    ``T = max(len(omic_sizes), 1)`` tokens, each the morphology-weighted pooling of ``h'`` (the tokens are then
    identical, so the token self-attention is uniform and its query/key weights get no gradient). ``hyperedges=False``
    keeps the CAB but every token pools with the morphology weights only.

    Parameters
    ----------
    in_channels
        Instance feature dimension.
    out_channels
        Number of output logits (e.g. discrete survival time bins).
    omic_sizes
        Genes per genomic family (one token each); sizes may be 0. Required (non-empty) when ``cab=True``.
    dim
        Model width.
    heads
        Attention heads.
    dim_head
        Width of each head.
    ratio
        Fraction of a bag's real instances in each hyperedge, in ``(0, 1]``.
    dropout
        Dropout probability.
    cab
        Use the cross-modal associating branch.
    hyperedges
        Add the genomics-guided hyperedges to the incidence (needs ``cab``).
    shared_cross_attention
        Legacy: the second cross-attention round reuses the first round's weights.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 4,
        *,
        omic_sizes: Sequence[int] = (),
        dim: int = 512,
        heads: int = 4,
        dim_head: int = 128,
        ratio: float = 0.2,
        dropout: float = 0.25,
        cab: bool = True,
        hyperedges: bool = True,
        shared_cross_attention: bool = False,
    ) -> None:
        super().__init__()
        self._save_hparams(
            ints=("in_channels", "out_channels", "dim", "heads", "dim_head"), probs=("dropout",)
        )
        sizes = _check_sizes("omic_sizes", omic_sizes)
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 < float(ratio) <= 1.0:
            raise ValueError(f"`ratio` must be a float in (0, 1], got {ratio!r}.")
        for name, flag in (
            ("cab", cab),
            ("hyperedges", hyperedges),
            ("shared_cross_attention", shared_cross_attention),
        ):
            if not isinstance(flag, bool):
                raise ValueError(f"`{name}` must be a bool, got {flag!r}.")
        if cab and not sizes:
            raise ValueError(
                "`omic_sizes` must list at least one genomic family (genes per family) when `cab=True`; "
                "pass `cab=False` for the slide-only ablation."
            )
        self.in_channels, self.omic_sizes, self.ratio = in_channels, sizes, float(ratio)
        self.use_cab, self.use_hyperedges = cab, cab and hyperedges
        self.n_tokens = len(sizes) if cab else max(len(sizes), 1)
        if cab:
            self._build_cab(dim, heads, dim_head, dropout, shared_cross_attention)
        self.hsb_proj = nn.Sequential(
            nn.Linear(in_channels, dim), nn.LayerNorm(dim), nn.ReLU(), nn.Dropout(dropout)
        )
        self.morphology = _GatedAttention(dim, 256)
        self.hyper_conv = nn.Sequential(
            nn.Linear(dim, dim),
            nn.LayerNorm(dim),
            nn.ReLU(),
            nn.Linear(dim, dim),
            nn.LayerNorm(dim),
            nn.ReLU(),
        )
        self.self_attn = _Attention(dim, heads, dim_head)
        self.ff = _PreNormFF(dim, dropout)
        self.token_head = nn.Sequential(
            nn.Linear(dim, 256), nn.LayerNorm(256), nn.ReLU(), nn.Dropout(dropout)
        )
        self.classifier = nn.Linear(self.n_tokens * 256, out_channels)

    def _build_cab(self, dim: int, heads: int, dim_head: int, dropout: float, shared: bool) -> None:
        self.cab_proj = nn.Sequential(nn.Linear(self.in_channels, dim), nn.ReLU(), nn.Dropout(dropout))
        self.tokens = nn.Parameter(torch.randn(1, self.n_tokens, dim))
        self.cross_attn0 = _PreNormCrossAttention(dim, heads, dim_head)
        self.cross_attn1 = None if shared else _PreNormCrossAttention(dim, heads, dim_head)
        self.ff0 = _PreNormFF(dim, dropout)
        self.ff1 = _PreNormFF(dim, dropout)
        self.cab_norm = nn.LayerNorm(dim)
        self.recon_heads = nn.ModuleList(
            nn.Sequential(
                nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ELU(), nn.Dropout(dropout), nn.Linear(dim, g)
            )
            if g
            else _EmptyHead()
            for g in self.omic_sizes
        )

    def _cab(
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """CAB tokens ``(B, T, dim)``, association logits ``(B, T, N)`` (0 at padding), reconstructions."""
        h = _per_instance(self.cab_proj, x, mask)
        tokens = self.tokens.expand(x.shape[0], -1, -1)
        second = self.cross_attn1 if self.cross_attn1 is not None else self.cross_attn0
        r, _ = self.cross_attn0(tokens, h, mask)
        r = self.ff0(r) + r
        r2, logits = second(tokens + r, h, mask)
        out = self.cab_norm(self.ff1(r2) + r2)
        association = logits.mean(dim=1).masked_fill(~mask[:, None, :], 0.0)
        genomics = [head(out[:, i]) for i, head in enumerate(self.recon_heads)]
        return out, association, genomics

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, Any]:
        """Predict from padded bags of instance features (the slide alone; genomics are only reconstructed).

        Parameters
        ----------
        x
            ``(B, N, in_channels)`` instance features.
        mask
            ``(B, N)`` bool, ``True`` at real instances; ``None``: all real.

        Returns
        -------
        ``{"logits": (B, out_channels), "genomics": [(B, omic_sizes[k]) per family] ([] when cab=False),
        "association": (B, T, N) head-averaged CAB logits, 0 at padding (None when cab=False),
        "attention": (B, N) morphology weights, 0 at padding}``.
        """
        mask = _check_bags(x, mask, self.in_channels)
        h = _per_instance(self.hsb_proj, x, mask)
        attention = self.morphology(h, mask)  # (B, N)
        tokens_out, association, genomics = None, None, []
        if self.use_cab:
            tokens_out, association, genomics = self._cab(x, mask)
        incidence = attention[:, None, :].expand(-1, self.n_tokens, -1)
        if self.use_hyperedges:
            incidence = (incidence + _topk_hyperedges(association, mask, self.ratio)) / 2
        e = incidence @ h  # (B, T, dim)
        tokens = self.hyper_conv(e) + e
        if tokens_out is not None:
            tokens = (tokens + tokens_out) / 2
        tokens = self.self_attn(tokens, tokens)[0] + tokens
        tokens = self.ff(tokens) + tokens
        logits = self.classifier(self.token_head(tokens).flatten(1))
        return {"logits": logits, "genomics": genomics, "association": association, "attention": attention}


# --- baselines -----------------------------------------------------------------------------------------------


class ABMIL(HParamsModule):
    """Gated-attention multiple-instance learning (Ilse et al., ICML 2018), CLAM-style.

    ``Linear-ReLU-Dropout`` to ``dim``; gated attention (``tanh`` and ``sigmoid`` branches of width ``hidden``),
    softmax over each bag's real instances; the attention-weighted sum goes through ``Linear-ReLU-Dropout`` and a
    final ``Linear`` to the logits.

    Parameters
    ----------
    in_channels
        Instance feature dimension.
    out_channels
        Number of output logits.
    dim
        Instance embedding width.
    hidden
        Width of the attention branches.
    dropout
        Dropout probability.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, dim: int = 512, hidden: int = 256, dropout: float = 0.25
    ) -> None:
        super().__init__()
        self._save_hparams(ints=("in_channels", "out_channels", "dim", "hidden"), probs=("dropout",))
        self.in_channels = in_channels
        self.embed = nn.Sequential(nn.Linear(in_channels, dim), nn.ReLU(), nn.Dropout(dropout))
        self.attention = _GatedAttention(dim, hidden)
        self.head = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, out_channels)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``(B, N, in_channels)`` bags (``mask`` ``(B, N)``, True = real) -> ``{"logits", "attention": (B, N)}``."""
        mask = _check_bags(x, mask, self.in_channels)
        h = _per_instance(self.embed, x, mask)
        a = self.attention(h, mask)
        pooled = (a[:, :, None] * h).sum(dim=1)
        return {"logits": self.head(pooled), "attention": a}


class BagTransformer(HParamsModule):
    """TransMIL-style transformer MIL (Shao et al., NeurIPS 2021) without the PPEG positional module.

    Instances are embedded (``Linear`` + ReLU) to ``dim``, a learned CLS token is prepended, ``layers`` pre-norm
    :class:`torch.nn.TransformerEncoderLayer` s (``batch_first``, ``norm_first``, feed-forward ``4 * dim``, GELU)
    mix them with padded instances masked as keys, and a final LayerNorm + ``Linear`` on the CLS token gives the
    logits. TransMIL's PPEG (convolutions over instances re-arranged on a square grid) is left out: region
    features of a slide have no grid coordinates here, and a bag is an unordered set.

    Parameters
    ----------
    in_channels
        Instance feature dimension.
    out_channels
        Number of output logits.
    dim
        Model width (a multiple of ``heads``).
    layers
        Number of transformer layers.
    heads
        Attention heads.
    dropout
        Dropout inside the transformer layers.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        dim: int = 256,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self._save_hparams(ints=("in_channels", "out_channels", "dim", "layers", "heads"), probs=("dropout",))
        if dim % heads:
            raise ValueError(f"`heads` ({heads}) must divide `dim` ({dim}).")
        self.in_channels = in_channels
        self.embed = nn.Sequential(nn.Linear(in_channels, dim), nn.ReLU())
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=4 * dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``(B, N, in_channels)`` bags (``mask`` ``(B, N)``, True = real) -> ``{"logits": (B, out_channels)}``."""
        mask = _check_bags(x, mask, self.in_channels)
        h = _per_instance(self.embed, x, mask)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), h], dim=1)
        pad = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], dim=1)
        h = self.encoder(h, src_key_padding_mask=pad)
        return {"logits": self.head(self.norm(h[:, 0]))}


class SNN(HParamsModule):
    """Self-normalising network on a genomic vector (Klambauer et al., NeurIPS 2017; as in PORPOISE / MCAT).

    ``Linear-SELU-AlphaDropout`` blocks of widths ``hidden`` and a final ``Linear``; weights use LeCun-normal
    initialisation (``N(0, 1 / fan_in)``) and biases 0, which keeps SELU activations self-normalising.

    Parameters
    ----------
    in_channels
        Number of genomic features.
    out_channels
        Number of output logits.
    hidden
        Widths of the hidden blocks (may be empty: a linear model).
    dropout
        Alpha-dropout probability.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        hidden: Sequence[int] = (256, 256),
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        self._save_hparams(ints=("in_channels", "out_channels"), probs=("dropout",))
        widths = _check_sizes("hidden", hidden)
        if any(w < 1 for w in widths):
            raise ValueError(f"`hidden` widths must be integers >= 1, got {list(widths)}.")
        self.in_channels = in_channels
        blocks: list[nn.Module] = []
        dims = (in_channels, *widths)
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            blocks += [nn.Linear(a, b), nn.SELU(), nn.AlphaDropout(dropout)]
        self.net = nn.Sequential(*blocks, nn.Linear(dims[-1], out_channels))
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1.0 / math.sqrt(m.in_features))
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, in_channels)`` genomic vectors -> ``{"logits": (B, out_channels)}``."""
        check_channels("x", x, 2, self.in_channels, "(B, G)")
        return {"logits": self.net(x)}
