"""Model registry: rebuild a model from its class name and ``hparams`` (what a checkpoint stores)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from hist_sd._core._registry import Registry
from hist_sd.nn._baselines import SpotGAT, SpotMLP, SpotTransformer
from hist_sd.nn._convnext import OutcomeConvNeXt, OutcomeHead
from hist_sd.nn._histnet import HiSTNet
from hist_sd.nn._linear import SpotLinear
from hist_sd.nn._mil import ABMIL, SNN, BagTransformer, GHANet

__all__ = ["MODELS", "build", "register_model"]

#: Model classes by name; ``build(name, hparams)`` looks them up here.
MODELS: Registry[type[nn.Module]] = Registry("model", "model_class")
for _cls in (HiSTNet, SpotMLP, SpotTransformer, SpotGAT, SpotLinear, GHANet, ABMIL, BagTransformer, SNN,
             OutcomeConvNeXt, OutcomeHead):
    MODELS.add(_cls.__name__, _cls)


def register_model(
    cls: type[nn.Module], name: str | None = None, *, overwrite: bool = False
) -> type[nn.Module]:
    """Add a model class to :data:`MODELS` (usable as a decorator).

    Parameters
    ----------
    cls
        A :class:`torch.nn.Module` subclass whose instances keep their constructor kwargs in ``self.hparams``.
    name
        Registry name; defaults to ``cls.__name__``.
    overwrite
        Replace an existing entry of the same name.

    Returns
    -------
    ``cls``, unchanged.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"`cls` must be a torch.nn.Module subclass, got {cls!r}.")
    return MODELS.add(name or cls.__name__, cls, overwrite=overwrite)


def build(name: str, hparams: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from its registry name and constructor keyword arguments.

    Parameters
    ----------
    name
        Key of :data:`MODELS` (the class name, e.g. ``"HiSTNet"``).
    hparams
        The model's ``hparams`` (as stored in a checkpoint).

    Returns
    -------
    A freshly initialised model; load weights with ``load_state_dict``.

    Examples
    --------
    >>> import hist_sd as hs
    >>> net = hs.nn.HiSTNet.from_preset("tiny", 16, 3)
    >>> twin = hs.nn.build(type(net).__name__, net.hparams)
    >>> _ = twin.load_state_dict(net.state_dict())
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; registered models are {sorted(MODELS)}.")
    if not isinstance(hparams, Mapping):
        raise TypeError(
            f"`hparams` must be a mapping of constructor keyword arguments, got {type(hparams).__name__}."
        )
    try:
        return MODELS[name](**dict(hparams))
    except TypeError as e:
        raise TypeError(f"Cannot build {name!r} from hparams {dict(hparams)!r}: {e}") from e
