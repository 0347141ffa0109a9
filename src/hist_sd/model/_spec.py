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

__all__ = ["INPUT_KINDS", "METHODS", "PATIENT_KINDS", "SURVIVAL", "MethodSpec", "get_method", "register_method"]

#: The task of patient-level methods: risk of an event from whole slides (:func:`hist_sd.tl.train_survival`).
SURVIVAL = "survival"

#: How data reach a network. Slides (expression, tumour): a ``(C, H, W)`` feature grid, independent spots, a set of
#: spots with grid positions, or a spot graph. Patients (survival): a bag of instance features (all regions of all
#: the patient's slides), or one vector per patient (its mean instance feature, or its genomic profile).
INPUT_KINDS: tuple[str, ...] = ("grid", "spot", "set", "graph", "bag", "patient")
#: Input kinds of whole-slide (patient-level) methods.
PATIENT_KINDS: tuple[str, ...] = ("bag", "patient")
#: How a method is fitted: by gradient descent (the training loop), in closed form (PCA + ridge), or as a penalised
#: Cox model (PCA + lifelines' CoxPHFitter).
FITTERS: tuple[str, ...] = ("gradient", "ridge", "cox")
#: What a method does with a patient's genomic profile: nothing, reconstruct it during training only (G-HANet), or
#: read it as its input at test time too (the genomics-only references).
GENOMICS_USES: tuple[str | None, ...] = (None, "train", "input")


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
        ``"gradient"``, ``"ridge"`` (closed form) or ``"cox"`` (penalised Cox partial likelihood).
    genomics
        ``None``, ``"train"`` (genomic profiles are reconstruction targets during training only: prediction needs
        only the slides) or ``"input"`` (the genome is the input, at test time too).
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
    genomics: str | None = None
    reference: str = ""

    @property
    def patient_level(self) -> bool:
        """Whether the method predicts per patient (survival) rather than per spot."""
        return self.input in PATIENT_KINDS

    def supports(self, task: TaskSpec) -> bool:
        """Whether the method can learn ``task``."""
        if self.tasks is not None:
            return task.name in self.tasks
        return self.fit == "gradient" or task.regression

    def check_task(self, task: TaskSpec) -> None:
        """Raise a clear error when the method cannot learn ``task``."""
        if not self.supports(task):
            from hist_sd.model._tasks import TASKS

            ok = list(self.tasks) if self.tasks is not None else [n for n, t in TASKS.items() if self.supports(t)]
            hint = " (whole-slide survival: `hs.tl.train_survival`)" if self.patient_level else ""
            raise ValueError(f"`method`={self.name!r} supports the tasks {ok}, not {task.name!r}{hint}.")


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
    if spec.genomics not in GENOMICS_USES:
        raise ValueError(f"MethodSpec.genomics must be one of {GENOMICS_USES}, got {spec.genomics!r}.")
    if spec.patient_level and spec.tasks != (SURVIVAL,):
        raise ValueError(f"A method with input={spec.input!r} must have tasks=({SURVIVAL!r},), got {spec.tasks!r}.")
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


def _plain(cls_name: str, **fixed: Any) -> Callable[..., nn.Module]:
    def build(in_channels: int, out_channels: int, *, preset: str = "compact", **kw: Any) -> nn.Module:
        from hist_sd import nn as hnn

        return getattr(hnn, cls_name)(in_channels, out_channels, **{**fixed, **kw})

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


# ---------------------------------------------------------------------------------------------- whole-slide survival
_GHANET = "Wang et al., IEEE TMI 2025 (G-HANet)"
#: Shared defaults of the gradient-trained survival methods: the G-HANet protocol (20 epochs, fixed in advance).
_SURV = {"tasks": (SURVIVAL,), "epochs": 20, "pca": None}
register_method(MethodSpec(
    name="ghanet", description="G-HANet: genomics-guided hyper-attention MIL (genomics in training only)",
    network=_plain("GHANet"), input="bag", genomics="train", reference=_GHANET, **_SURV,
))
register_method(MethodSpec(
    name="ghanet_nocab", description="G-HANet without the cross-modal associating branch (ablation)",
    network=_plain("GHANet", cab=False), input="bag", reference=_GHANET, **_SURV,
))
register_method(MethodSpec(
    name="ghanet_nohyper", description="G-HANet without genomic hyperedges: every token pools with gated attention",
    network=_plain("GHANet", hyperedges=False), input="bag", genomics="train", reference=_GHANET, **_SURV,
))
register_method(MethodSpec(
    name="abmil", description="gated-attention multiple-instance learning",
    network=_plain("ABMIL"), input="bag", reference="Ilse et al., ICML 2018 (ABMIL)", **_SURV,
))
register_method(MethodSpec(
    name="transmil", description="transformer MIL with a class token (TransMIL style, exact attention, no PPEG)",
    network=_plain("BagTransformer"), input="bag", reference="Shao et al., NeurIPS 2021 (TransMIL)", **_SURV,
))
register_method(MethodSpec(
    name="meanpool", description="patient-mean instance feature -> PCA-8 -> penalised Cox (the linear floor)",
    network=_plain("SpotLinear"), input="patient", tasks=(SURVIVAL,), epochs=0, pca=8, fit="cox",
    reference="linear floor",
))
register_method(MethodSpec(
    name="snn", description="self-normalising network on the genomic profile (sees the genome at test time)",
    network=_plain("SNN"), input="patient", genomics="input", reference="Klambauer et al., NeurIPS 2017 (SNN)", **_SURV,
))
register_method(MethodSpec(
    name="coxgenomics", description="genomic profile -> PCA-8 -> penalised Cox (sees the genome at test time)",
    network=_plain("SpotLinear"), input="patient", tasks=(SURVIVAL,), epochs=0, pca=8, fit="cox",
    genomics="input", reference="Cox, J. R. Stat. Soc. B 1972",
))
