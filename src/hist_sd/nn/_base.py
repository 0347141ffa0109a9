"""Shared pieces of the torch models: argument checks and the ``hparams`` contract.

Every network in :mod:`hist_sd.nn` stores its constructor arguments in ``self.hparams`` (a JSON-serialisable
``dict``) so that ``type(model)(**model.hparams)`` rebuilds an identical, untrained architecture and a checkpoint
only needs the class name, ``hparams`` and the ``state_dict`` (see :func:`hist_sd.nn.build`).
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from hist_sd._core._validate import check_int, check_prob

__all__ = ["HParamsModule", "check_channels", "check_int", "check_prob"]


class HParamsModule(nn.Module):
    """A :class:`torch.nn.Module` that remembers its (JSON-serialisable) constructor arguments."""

    hparams: dict[str, Any]

    def _save_hparams(
        self,
        *,
        ints: Sequence[str] = (),
        probs: Sequence[str] = (),
        minimum: Mapping[str, int] | None = None,
        optional: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Check the caller's constructor arguments and keep them in ``self.hparams`` (as Lightning does).

        Reads the arguments of the calling ``__init__`` (call it first thing, before they change): ``ints`` must be
        integers >= 1 (or ``minimum[name]``; ``None`` allowed for names in ``optional``), ``probs`` floats in
        ``[0, 1)``; every argument must be JSON-serialisable. Returns the checked arguments.
        """
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        if caller is None:  # pragma: no cover - CPython always has frames
            raise RuntimeError("_save_hparams must be called from a constructor.")
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        args = {k: caller.f_locals[k] for k in names if k in caller.f_locals}
        low = dict(minimum or {})
        for k in ints:
            args[k] = check_int(k, args[k], minimum=low.get(k, 1), allow_none=k in optional)
        for k in probs:
            args[k] = check_prob(k, args[k])
        self.hparams = {k: _plain(k, v) for k, v in args.items()}
        return args

    def extra_repr(self) -> str:  # shown by print(model)
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams.items()) if hasattr(self, "hparams") else ""

    def n_parameters(self, *, trainable_only: bool = True) -> int:
        """Number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def _plain(name: str, value: Any) -> Any:
    """Turn numpy/torch scalars into plain Python values; refuse what JSON cannot hold."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, list | tuple):
        return [_plain(name, v) for v in value]
    raise TypeError(f"`{name}` must be a JSON-serialisable scalar or list, got {type(value).__name__}.")


def check_channels(name: str, x: torch.Tensor, ndim: int, channels: int, layout: str) -> None:
    """Check a tensor's rank and its last/feature channel count."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim != ndim:
        raise ValueError(
            f"`{name}` must have shape {layout}, got a {x.ndim}-D tensor of shape {tuple(x.shape)}."
        )
    c = x.shape[1] if layout.startswith("(B, C,") else x.shape[-1]
    if c != channels:
        raise ValueError(
            f"`{name}` has {c} feature channels, but the model was built with in_channels={channels}."
        )
