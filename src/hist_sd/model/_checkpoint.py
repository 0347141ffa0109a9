"""What every checkpoint kind shares: saving, header checks, finite values, rebuilding the network."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["check_finite", "check_header", "rebuild_net", "save_state"]

logger = logging.getLogger("hist_sd")


def save_state(state: dict[str, Any], path: str | os.PathLike[str], *, overwrite: bool, what: str) -> Path:
    """``torch.save`` a checkpoint to ``path`` atomically (an existing file needs ``overwrite``); logs ``what``."""
    import torch

    from hist_sd._core._files import atomic_path

    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save(state, tmp)
    logger.info("saved %s to %s", what, path)
    return path


def check_header(state: dict[str, Any], *, version: int, required: Iterable[str], writer: str) -> None:
    """Refuse a checkpoint of a newer format than ``version`` or one that lacks ``required`` entries."""
    if int(state.get("format_version", 0)) > version:
        raise ValueError(
            f"Checkpoint format version {state['format_version']} is newer than this hist_sd ({version}); upgrade "
            "hist_sd."
        )
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(
            f"The checkpoint lacks {', '.join(map(repr, missing))}: it is incomplete or was not written by "
            f"`{writer}`."
        )


def check_finite(state: dict[str, Any], keys: Iterable[str]) -> None:
    """Refuse NaN or infinite weights and statistics ``state[k]`` for ``keys`` (they would predict NaN everywhere)."""
    import torch

    tensors = {f"state_dict[{k!r}]": v for k, v in state["state_dict"].items()}
    tensors.update({k: state[k] for k in keys if state.get(k) is not None})
    bad = [k for k, v in tensors.items() if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"The checkpoint has NaN or infinite values in {', '.join(bad[:5])}; it cannot predict.")


def rebuild_net(state: dict[str, Any]) -> nn.Module:
    """The network of a checkpoint: rebuilt from its class name and ``hparams``, weights loaded, in eval mode."""
    from hist_sd import nn

    net = nn.build(state["model_class"], state["hparams"])
    try:
        net.load_state_dict(state["state_dict"], strict=True)
    except RuntimeError as err:
        raise ValueError(f"Checkpoint weights do not fit a {state['model_class']} with its stored settings: {err}") from err
    return net.eval()
