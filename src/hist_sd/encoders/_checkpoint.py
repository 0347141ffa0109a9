"""Reading encoder checkpoints: local files only, flat state dicts, strict loading with clear errors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["check_file", "load_checkpoint", "load_strict"]


def check_file(weights: str | os.PathLike[str] | None, encoder: str) -> Path:
    """The local checkpoint file ``weights`` of ``encoder``: an error naming the argument when it is missing."""
    if weights is None:
        raise ValueError(
            f"Encoder {encoder!r} needs `weights=`: the path of a local checkpoint file "
            "(it cannot be downloaded by hist_sd)."
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"`weights`: no checkpoint file for encoder {encoder!r} at {str(path)!r}.")
    return path


def load_checkpoint(path: str | os.PathLike[str], encoder: str) -> dict[str, Any]:
    """Read a checkpoint into a flat state dict (unwrapping ``"model"``/``"state_dict"`` and ``module.``)."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"`weights`: could not read {str(path)!r} as a torch checkpoint for encoder {encoder!r}: {err}") from err
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"`weights`: {str(path)!r} is not a state dict of tensors (encoder {encoder!r}).")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_strict(module: nn.Module, state: Mapping[str, Any], encoder: str, path: str | os.PathLike[str]) -> None:
    """``load_state_dict(strict=True)`` with an error naming the encoder and the mismatching keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shape:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (" …" if len(keys) > 4 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) ({few(unexpected)})")
        if shape:
            parts.append(f"{len(shape)} shape mismatch(es) ({few(shape)})")
        raise ValueError(
            f"`weights` {str(path)!r} does not fit encoder {encoder!r}: " + "; ".join(parts) + ". "
            "Is it a checkpoint of another model?"
        )
    module.load_state_dict(state, strict=True)
