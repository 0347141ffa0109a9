"""What every checkpoint kind shares: refusing non-finite values and rebuilding the network from its record."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["check_finite", "rebuild_net"]


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
