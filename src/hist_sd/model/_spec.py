"""How each method is built and fed: one :class:`MethodSpec` per method, registered once.

The network factory, the input kind (how a slide reaches the network), the tasks it supports, its default
epochs, input noise, correlation-loss weight and PCA input all live here; the training engine, prediction, the
CLI and the benchmark read them from :data:`METHODS`. Adding a method is one :func:`register_method` call plus its
network in :mod:`hist_sd.nn`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hist_sd._core._registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from hist_sd.model._tasks import TaskSpec

__all__ = ["INPUT_KINDS", "METHODS", "MethodSpec", "get_method", "register_method"]

#: How a slide reaches a network: a ``(C, H, W)`` feature grid, independent spots, a set of spots with grid
#: positions, or a spot graph.
INPUT_KINDS: tuple[str, ...] = ("grid", "spot", "set", "graph")
#: How a method is fitted: by gradient descent (the training loop) or in closed form (PCA + ridge).
FITTERS: tuple[str, ...] = ("gradient", "ridge")


@dataclass(frozen=True)
class MethodSpec:
    """One method: its network, input kind, supported tasks and training defaults.

    Attributes
    ----------
    name
        Registry name (``method=`` of :func:`hist_sd.tl.train`).
    description
        One line for listings.
    network
        ``network(in_channels, out_channels, *, preset, **model_kwargs) -> torch.nn.Module``.
    input
        One of :data:`INPUT_KINDS`.
    epochs
        Default training epochs (an epoch is one pass over the training slides, or spots for ``"spot"`` input).
    tasks
        Tasks the method supports; ``None``: every registered task its ``fit`` can learn (gradient descent: any;
        closed-form ridge: regression tasks).
    input_noise
        Default standard deviation of the Gaussian noise added to the inputs during training.
    corr_weight
        Default weight of the correlation term of regression losses.
    pca
        Default number of whitened principal components of the training features fed to the network (``None``:
        all standardised features). For ``fit="ridge"`` the components of the PCA + ridge baseline.
    fit
        ``"gradient"`` or ``"ridge"`` (closed form).
    reference
        Where the method comes from.
    """

    name: str
    description: str
    network: Callable[..., nn.Module]
    input: str
    epochs: int
    tasks: tuple[str, ...] | None = None
    input_noise: float = 0.0
    corr_weight: float = 0.0
    pca: int | None = 32
    fit: str = "gradient"
    reference: str = ""

    def supports(self, task: TaskSpec) -> bool:
        """Whether the method can learn ``task``."""
        if self.tasks is not None:
            return task.name in self.tasks
        return self.fit == "gradient" or task.regression

    def check_task(self, task: TaskSpec) -> None:
        """Raise a clear error when the method cannot learn ``task``."""
        if not self.supports(task):
            from hist_sd.model._tasks import TASKS

            ok = [name for name, t in TASKS.items() if self.supports(t)]
            raise ValueError(f"`method`={self.name!r} supports the tasks {ok}, not {task.name!r}.")


#: Every registered method, by name.
METHODS: Registry[MethodSpec] = Registry("method", "method")


def register_method(spec: MethodSpec, *, overwrite: bool = False) -> MethodSpec:
    """Add a method to :data:`METHODS` (an existing name needs ``overwrite=True``)."""
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"`spec` must be a MethodSpec, got {type(spec).__name__}.")
    if spec.input not in INPUT_KINDS:
        raise ValueError(f"MethodSpec.input must be one of {INPUT_KINDS}, got {spec.input!r}.")
    if spec.fit not in FITTERS:
        raise ValueError(f"MethodSpec.fit must be one of {FITTERS}, got {spec.fit!r}.")
    return METHODS.add(spec.name, spec, overwrite=overwrite)


def get_method(name: str) -> MethodSpec:
    """The spec of method ``name``; a clear error listing the registered methods otherwise."""
    return METHODS.lookup(name)


# ---------------------------------------------------------------------------------------------- network factories
def _histnet(**fixed: Any) -> Callable[..., nn.Module]:
    def build(in_channels: int, out_channels: int, *, preset: str = "compact", **kw: Any) -> nn.Module:
        from hist_sd.nn import HiSTNet

        return HiSTNet.from_preset(preset, in_channels, out_channels, **{**fixed, **kw})

    return build


def _plain(cls_name: str) -> Callable[..., nn.Module]:
    def build(in_channels: int, out_channels: int, *, preset: str = "compact", **kw: Any) -> nn.Module:
        from hist_sd import nn as hnn

        return getattr(hnn, cls_name)(in_channels, out_channels, **kw)

    return build


_HIST = "Li et al., Adv. Sci. 2026 (HiST)"
_HIST_DEFAULTS = {"input": "grid", "epochs": 400, "input_noise": 1.0, "corr_weight": 1.0, "reference": _HIST}
register_method(MethodSpec(
    name="hist", description="HiST: attention U-Net with a ConvMixer bottleneck on the spot grid",
    network=_histnet(), **_HIST_DEFAULTS,
))
register_method(MethodSpec(
    name="hist_noattn", description="HiST without attention gates (ablation)",
    network=_histnet(attention=False), **_HIST_DEFAULTS,
))
register_method(MethodSpec(
    name="hist_noconvmixer", description="HiST without the ConvMixer bottleneck (ablation)",
    network=_histnet(convmixer=False), **_HIST_DEFAULTS,
))
register_method(MethodSpec(
    name="ridge", description="PCA + ridge, penalty by generalised cross-validation (HEST-benchmark protocol)",
    network=_plain("SpotLinear"), input="spot", epochs=0, pca=256, fit="ridge",
    reference="Jaume et al., NeurIPS 2024 (HEST-1k)",
))
register_method(MethodSpec(
    name="mlp", description="per-spot two-layer perceptron (ST-Net style)",
    network=_plain("SpotMLP"), input="spot", epochs=60, reference="He et al., Nat. Biomed. Eng. 2020 (ST-Net)",
))
register_method(MethodSpec(
    name="transformer", description="transformer over the spots of a slide (HisToGene style)",
    network=_plain("SpotTransformer"), input="set", epochs=300, reference="Pang et al., bioRxiv 2021 (HisToGene)",
))
register_method(MethodSpec(
    name="gnn", description="graph attention over the spot-neighbour graph (Hist2ST / THItoGene style)",
    network=_plain("SpotGAT"), input="graph", epochs=300, reference="Zeng et al., Brief. Bioinform. 2022 (Hist2ST)",
))
