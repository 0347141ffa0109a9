"""The fitted outcome model of HiST's application module: a network on predicted gene maps + what it learned.

An :class:`OutcomeModel` scores slides from their predicted gene maps (and clinical covariates). Everything it
applies was learned on its training slides: the per-gene standardisation of the maps, the encoding of the
clinical covariates (levels of the one-hot columns), the classes of a response and the median training risk that
splits slides into high and low risk. Predicting needs this module and :mod:`hist_sd.nn`; never the engine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("hist_sd")

__all__ = ["OUTCOME_FORMAT", "OutcomeModel", "encode_clinical", "pad_maps"]

#: The format entry of outcome checkpoints.
OUTCOME_FORMAT = "hist_sd.outcome_model"
FORMAT_VERSION = 1
_REQUIRED = ("model_class", "hparams", "state_dict", "task", "genes", "gene_mean", "gene_std", "clinical")


def pad_maps(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], mean: np.ndarray | None = None,
             std: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Standardise maps per gene (inside their masks) and zero-pad them bottom/right to a common size.

    Returns ``(B, G, H_max, W_max)`` float32 maps (zero outside the masks) and ``(B, H_max, W_max)`` bool masks.
    """
    h = max(m.shape[1] for m in maps)
    w = max(m.shape[2] for m in maps)
    g = maps[0].shape[0]
    x = np.zeros((len(maps), g, h, w), np.float32)
    mk = np.zeros((len(maps), h, w), bool)
    for i, (a, m) in enumerate(zip(maps, masks, strict=True)):
        v = a if mean is None else (a - mean[:, None, None]) / std[:, None, None]
        x[i, :, : a.shape[1], : a.shape[2]] = np.where(m[None], v, 0.0)
        mk[i, : m.shape[0], : m.shape[1]] = m
    return x, mk


def encode_clinical(obs: pd.DataFrame, spec: Mapping[str, Mapping[str, Any]]) -> np.ndarray:
    """Clinical covariates -> float32 ``(n, d)``: one-hot columns for categorical ones, z-scores for numeric ones.

    ``spec[column]`` is ``{"kind": "onehot", "levels": [...]}`` (a level not seen in training, or a missing value,
    encodes as all zeros) or ``{"kind": "numeric", "mean": m, "std": s}`` (a missing value encodes as 0, the
    training mean).
    """
    parts = []
    for col, s in spec.items():
        if col not in obs.columns:
            raise KeyError(f"The clinical column {col!r} the model was trained with is missing; the table has "
                           f"{list(obs.columns)}.")
        v = obs[col]
        if s["kind"] == "onehot":
            vals = v.astype(object).where(v.notna(), None).map(lambda a: None if a is None else str(a))
            parts.append(np.stack([(vals == lev).to_numpy(bool) for lev in s["levels"]], axis=1).astype(np.float32))
        else:
            num = pd.to_numeric(v, errors="coerce").to_numpy(np.float64)
            z = (num - float(s["mean"])) / float(s["std"])
            parts.append(np.nan_to_num(z, nan=0.0)[:, None].astype(np.float32))
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(obs), 0), np.float32)


@dataclass
class OutcomeModel:
    """A trained outcome model on predicted gene maps (survival: Cox log-hazard; response: class probabilities).

    Created by :func:`hist_sd.tl.train_outcome`; restored by :func:`hist_sd.tl.load_model`.

    Attributes
    ----------
    net
        :class:`~hist_sd.nn.OutcomeConvNeXt`.
    task
        ``"survival"`` or ``"response"``.
    genes
        The map channels, in the order the network reads them.
    gene_mean, gene_std
        Per-gene standardisation learned on the training slides' tiles.
    clinical
        Encoding of each clinical covariate (see :func:`encode_clinical`), in input order.
    classes
        Response classes (logit order); empty for survival.
    threshold
        Median risk of the training slides (survival): the high/low split.
    shape
        The fixed map shape ``(H, W)`` of the training maps, or ``None`` for slides' own grids.
    params, history
        Training parameters; the loss per epoch.
    """

    net: torch.nn.Module
    task: str
    genes: list[str]
    gene_mean: np.ndarray
    gene_std: np.ndarray
    clinical: dict[str, dict[str, Any]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    threshold: float = float("nan")
    shape: tuple[int, int] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)

    def __repr__(self) -> str:
        what = f"classes={self.classes}" if self.task == "response" else f"threshold={self.threshold:.3g}"
        return (f"OutcomeModel(task={self.task!r}, {len(self.genes)} genes, clinical={list(self.clinical)}, "
                f"{what}, net={type(self.net).__name__})")

    # ------------------------------------------------------------------ prediction
    def inputs(self, maps: Any, obs: pd.DataFrame | None = None) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Maps reordered to this model's genes, their masks and the encoded clinical covariates of ``maps``.

        ``maps`` is a :class:`hist_sd.tl.OutcomeMaps`; ``obs`` (default ``maps.obs``) holds the clinical columns.
        """
        missing = [g for g in self.genes if g not in maps.genes]
        if missing:
            raise ValueError(f"The maps lack {len(missing)} of the model's {len(self.genes)} genes, e.g. "
                             f"{missing[:5]}; predict the slides with the expression model this one was trained on.")
        idx = [maps.genes.index(g) for g in self.genes]
        arrays = [m[idx] for m in maps.maps]
        clin = encode_clinical(maps.obs if obs is None else obs, self.clinical)
        return arrays, list(maps.masks), clin

    def predict_output(self, maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], clinical: np.ndarray, *,
                       batch_size: int = 16, device: torch.device | None = None) -> np.ndarray:
        """Raw network output per slide: ``(n, 1)`` log-hazards or ``(n, K)`` class logits."""
        import torch

        dev = device or torch.device("cpu")
        net = self.net.to(dev).eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(maps), batch_size):
                x, m = pad_maps(maps[i : i + batch_size], masks[i : i + batch_size], self.gene_mean, self.gene_std)
                c = torch.from_numpy(clinical[i : i + batch_size]).to(dev)
                out.append(net(torch.from_numpy(x).to(dev), torch.from_numpy(m).to(dev), c)["logits"].cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def predict(self, maps: Any, obs: pd.DataFrame | None = None, *, device: torch.device | None = None
                ) -> pd.DataFrame:
        """One row per slide of ``maps``: ``risk`` and ``risk_group`` (survival) or ``p_<class>`` and ``pred``."""
        arrays, masks, clin = self.inputs(maps, obs)
        out = self.predict_output(arrays, masks, clin, device=device)
        index = pd.Index(maps.names, name="slide_id")
        if self.task == "survival":
            risk = out[:, 0]
            return pd.DataFrame({"risk": risk, "risk_group": np.where(risk > self.threshold, "high", "low")},
                                index=index)
        z = out - out.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        df = pd.DataFrame(p, index=index, columns=[f"p_{c}" for c in self.classes])
        df["pred"] = np.asarray(self.classes, dtype=object)[p.argmax(axis=1)]
        return df

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """Everything :meth:`from_state` needs, as tensors and plain values (``weights_only`` loadable)."""
        import torch

        return {
            "format": OUTCOME_FORMAT, "format_version": FORMAT_VERSION,
            "model_class": type(self.net).__name__, "hparams": dict(self.net.hparams),
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "task": self.task, "genes": list(self.genes),
            "gene_mean": torch.from_numpy(np.asarray(self.gene_mean, np.float32).copy()),
            "gene_std": torch.from_numpy(np.asarray(self.gene_std, np.float32).copy()),
            "clinical": {k: {kk: (list(vv) if isinstance(vv, list | tuple) else vv) for kk, vv in v.items()}
                         for k, v in self.clinical.items()},
            "classes": list(self.classes), "threshold": float(self.threshold),
            "shape": None if self.shape is None else [int(s) for s in self.shape],
            "params": {k: v for k, v in self.params.items() if isinstance(v, str | int | float | bool | list | type(None))},
            "history": [float(h) for h in self.history],
        }

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Save the model to ``path`` (a ``.pt`` file), atomically; an existing file needs ``overwrite=True``."""
        from hist_sd.model._checkpoint import save_state

        return save_state(self.state(), path, overwrite=overwrite, what="outcome model")

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OutcomeModel:
        """Rebuild a model from :meth:`state` (refusing incomplete or non-finite checkpoints)."""
        from hist_sd.model._checkpoint import check_finite, check_header, rebuild_net

        check_header(state, version=FORMAT_VERSION, required=_REQUIRED, writer="OutcomeModel.save")
        check_finite(state, ("gene_mean", "gene_std"))
        shape = state.get("shape")
        return cls(net=rebuild_net(state), task=str(state["task"]), genes=list(state["genes"]),
                   gene_mean=state["gene_mean"].numpy(), gene_std=state["gene_std"].numpy(),
                   clinical={k: dict(v) for k, v in state["clinical"].items()}, classes=list(state.get("classes", [])),
                   threshold=float(state.get("threshold", float("nan"))),
                   shape=None if shape is None else (int(shape[0]), int(shape[1])),
                   params=dict(state.get("params", {})), history=list(state.get("history", [])))
