"""The fitted whole-slide survival model: network + what it needs to score a new patient, with safe save/load.

A :class:`SurvivalModel` scores patients from their instance bags alone (or from their genome, for the methods
that read it at test time). Everything it applies was learned on its training patients: the time bins, the
feature standardisation and PCA, the genes of each family and their scale, and the risk threshold that splits
patients into high and low risk. Predicting needs this module and :mod:`hist_sd.nn`; never the training engine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hist_sd.model._spec import MethodSpec, get_method

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("hist_sd")

#: The format entry of whole-slide survival checkpoints.
SURVIVAL_FORMAT = "hist_sd.survival_model"

FORMAT_VERSION = 1
#: Losses a survival network is trained with: the discrete-time NLL over time bins, or the Cox partial likelihood.
LOSSES: tuple[str, ...] = ("nll", "cox")
_REQUIRED = (
    "model_class", "hparams", "state_dict", "method", "loss", "feature_dim", "feature_mean", "feature_std",
    "cuts", "inputs", "threshold",
)  # fmt: skip
_ARRAYS = ("feature_mean", "feature_std", "projection", "cuts", "genomic_mean", "genomic_std")


def pad_bags(
    bags: Sequence[np.ndarray], mean: np.ndarray, std: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise and zero-pad instance bags into ``(B, N_max, D)`` features and a ``(B, N_max)`` mask."""
    import torch

    n = [len(b) for b in bags]
    x = np.zeros((len(bags), max(n), len(mean)), np.float32)
    mask = np.zeros((len(bags), max(n)), bool)
    for i, b in enumerate(bags):
        x[i, : n[i]] = (b - mean) / std
        mask[i, : n[i]] = True
    return torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device)


def patient_means(bags: Sequence[np.ndarray]) -> np.ndarray:
    """Mean instance feature of each patient, ``(n_patients, D)``."""
    return np.stack([np.asarray(b, np.float64).mean(axis=0) for b in bags]).astype(np.float32)


def network_logits(out: Any) -> torch.Tensor:
    """The logits of a network's output: bag networks return a dict with ``"logits"``, linear layers a tensor."""
    return out["logits"] if isinstance(out, dict) else out


def risk_from_output(logits: np.ndarray, loss: str) -> np.ndarray:
    """Network output -> risk (higher = earlier event): ``-sum(S(t))`` over the time bins, or the Cox log-hazard."""
    from hist_sd._core._survival import risk_from_hazard_logits

    return risk_from_hazard_logits(logits) if loss == "nll" else np.asarray(logits, np.float64)[:, 0]


@dataclass
class SurvivalModel:
    """A trained whole-slide survival model (G-HANet, a MIL baseline, the linear floor or a genomic reference).

    Created by :func:`hist_sd.tl.train_survival`; restored by :func:`hist_sd.tl.load_model`.

    Attributes
    ----------
    net
        The torch module (:mod:`hist_sd.nn`); a linear layer for the Cox fits.
    method
        A registered survival method (``hs.model.METHODS``; ``ghanet``, ``abmil``, ``meanpool``, ...).
    loss
        ``"nll"`` (discrete-time hazards over the time bins ``cuts``) or ``"cox"`` (one log-hazard).
    feature_dim
        Instance feature dimension of the training cohort.
    inputs
        ``"features"`` (instance bags) or ``"genomics"`` (the genomic columns ``genomic_columns``).
    feature_mean, feature_std
        Standardisation of the network input learned on the training patients: per instance for bags, per patient
        for patient vectors (mean features or genomics).
    projection
        ``(d, k)`` whitened PCA projection applied after standardisation, or ``None``.
    cuts
        Inner cut points (months) of the time bins, from the training fold's events.
    families, genomic_columns, genomic_mean, genomic_std
        Genomic columns selected on the training fold for each family (reconstruction targets of G-HANet), the
        columns read as input (genomics methods) and their standardisation.
    threshold
        Median risk of the training patients: the split into high and low risk groups.
    params, history
        Training parameters; the loss per epoch.
    """

    net: torch.nn.Module
    method: str
    loss: str
    feature_dim: int
    feature_mean: np.ndarray
    feature_std: np.ndarray
    inputs: str = "features"
    projection: np.ndarray | None = None
    cuts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    families: dict[str, list[str]] = field(default_factory=dict)
    genomic_columns: list[str] = field(default_factory=list)
    genomic_mean: np.ndarray | None = None
    genomic_std: np.ndarray | None = None
    threshold: float = float("nan")
    params: dict[str, Any] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)

    @property
    def spec(self) -> MethodSpec:
        """The method's :class:`~hist_sd.model.MethodSpec`."""
        return get_method(self.method)

    def __repr__(self) -> str:
        fams = f", {sum(map(len, self.families.values()))} genomic targets in {len(self.families)} families" if self.families else ""
        return (
            f"SurvivalModel(method={self.method!r}, loss={self.loss!r}, inputs={self.inputs!r}, "
            f"feature_dim={self.feature_dim}, bins={len(self.cuts) + 1 if self.loss == 'nll' else '-'}{fams})"
        )

    # ------------------------------------------------------------------ checks
    def check_features(self, bags: Sequence[np.ndarray]) -> None:
        """Refuse bags without instances or of another feature dimension than the training cohort's."""
        for i, b in enumerate(bags):
            if b.ndim != 2 or len(b) == 0:
                raise ValueError(f"Patient {i}: a bag with no instances (shape {b.shape}); every patient needs >= 1.")
            if b.shape[1] != self.feature_dim:
                raise ValueError(
                    f"Feature dimension mismatch: the model was trained on {self.feature_dim}-d instance features, "
                    f"patient {i} has {b.shape[1]}-d features (another encoder?)."
                )

    # ------------------------------------------------------------------ prediction
    def predict_output(
        self,
        bags: Sequence[np.ndarray] | None = None,
        *,
        genomics: np.ndarray | None = None,
        batch_size: int = 64,
        device: torch.device | None = None,
    ) -> np.ndarray:
        """Raw network output per patient, ``(n, K)``: hazard logits (``loss="nll"``) or log-hazards."""
        import torch

        dev = device or torch.device("cpu")
        net = self.net.to(dev).eval()
        if self.inputs == "genomics":
            if genomics is None:
                raise ValueError(
                    f"method={self.method!r} reads the genome at test time: pass `genomics` "
                    f"({len(self.genomic_columns)} columns)."
                )
            batches: Iterable[tuple[torch.Tensor, ...]] = [
                (torch.from_numpy(self.patient_input(np.asarray(genomics, np.float32))).to(dev),)
            ]
        elif bags is None:
            raise ValueError("`bags` (instance features per patient) are required.")
        else:
            self.check_features(bags)
            if self.spec.input == "patient":
                batches = [(torch.from_numpy(self.patient_input(patient_means(bags))).to(dev),)]
            else:
                batches = (pad_bags(bags[i : i + batch_size], self.feature_mean, self.feature_std, dev)
                           for i in range(0, len(bags), batch_size))
        with torch.no_grad():
            return np.concatenate([network_logits(net(*b)).cpu().numpy() for b in batches])

    def predict_risk(self, bags: Sequence[np.ndarray] | None = None, **kwargs: Any) -> np.ndarray:
        """Risk per patient (higher = earlier event); keyword arguments as :meth:`predict_output`."""
        return risk_from_output(self.predict_output(bags, **kwargs), self.loss)

    def genomic_input(self, genomics: pd.DataFrame | None) -> np.ndarray | None:
        """The genomic columns this model reads, ``(n, g)`` float32, from a patients x columns frame.

        ``None`` for models that read only the slides (or when no frame is given).
        """
        if self.inputs != "genomics" or genomics is None:
            return None
        missing = [c for c in self.genomic_columns if c not in genomics.columns]
        if missing:
            raise KeyError(f"The model reads genomic columns the cohort lacks, e.g. {missing[:3]}.")
        return genomics[self.genomic_columns].to_numpy(np.float32)

    def patient_input(self, x: np.ndarray) -> np.ndarray:
        """Standardise (and project) patient vectors with the training statistics, ``(n, d)`` float32."""
        z = (x - self.feature_mean) / self.feature_std
        if self.projection is not None:
            z = z @ self.projection
        return z.astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """Everything :func:`load_survival_model` needs, as tensors and plain values (``weights_only`` loadable)."""
        import torch

        state: dict[str, Any] = {
            "format": SURVIVAL_FORMAT,
            "format_version": FORMAT_VERSION,
            "model_class": type(self.net).__name__,
            "hparams": dict(self.net.hparams),
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "method": self.method,
            "loss": self.loss,
            "inputs": self.inputs,
            "feature_dim": int(self.feature_dim),
            "families": {k: list(v) for k, v in self.families.items()},
            "genomic_columns": list(self.genomic_columns),
            "threshold": float(self.threshold),
            "params": {k: v for k, v in self.params.items() if isinstance(v, str | int | float | bool | list | type(None))},
            "history": [float(h) for h in self.history],
        }
        for k in _ARRAYS:
            v = getattr(self, k)
            state[k] = None if v is None else torch.from_numpy(np.asarray(v, np.float32).copy())
        return state

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Save the model to ``path`` (a ``.pt`` file), atomically; an existing file needs ``overwrite=True``."""
        from hist_sd.model._checkpoint import save_state

        return save_state(self.state(), path, overwrite=overwrite, what="survival model")

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SurvivalModel:
        """Rebuild a model from :meth:`state`."""
        from hist_sd.model._checkpoint import check_finite, check_header, rebuild_net

        check_header(state, version=FORMAT_VERSION, required=_REQUIRED, writer="SurvivalModel.save")
        check_finite(state, _ARRAYS)
        net = rebuild_net(state)
        arrays = {k: None if state.get(k) is None else state[k].numpy() for k in _ARRAYS}
        return cls(
            net=net, method=state["method"], loss=state["loss"], feature_dim=int(state["feature_dim"]),
            inputs=state["inputs"], families={k: list(v) for k, v in state.get("families", {}).items()},
            genomic_columns=list(state.get("genomic_columns", [])), threshold=float(state["threshold"]),
            params=dict(state.get("params", {})), history=list(state.get("history", [])),
            **{k: v for k, v in arrays.items() if v is not None or k in ("projection", "genomic_mean", "genomic_std")},
        )
