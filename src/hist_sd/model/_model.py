"""The fitted model object: network + everything needed to apply it to a new slide, with safe save/load.

Predicting needs only this module, :mod:`hist_sd.model` and :mod:`hist_sd.nn`; the training engine is never
imported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hist_sd._core._grid import SQUARE_LAYOUTS
from hist_sd._core._validate import patch_record, patch_sizes, patch_text, same_patches
from hist_sd.model._checkpoint import check_finite, check_header, rebuild_net, save_state
from hist_sd.model._forward import forward_section
from hist_sd.model._section import slide_normalise
from hist_sd.model._spec import MethodSpec, get_method
from hist_sd.model._tasks import TaskSpec, get_task

if TYPE_CHECKING:
    import torch

    from hist_sd.model._section import Section
    from hist_sd.model._survival import SurvivalModel

logger = logging.getLogger("hist_sd")

FORMAT = "hist_sd.model"
#: 2: the resolved grid layout, the features' patch size (µm) and mpp are recorded and checked.
FORMAT_VERSION = 2
#: Relative difference of patch sizes (µm) tolerated between training and prediction features.
PATCH_TOLERANCE = 0.01
#: Entries every checkpoint has.
_REQUIRED = (
    "model_class", "hparams", "state_dict", "method", "task", "genes", "features_key", "encoder", "feature_dim",
    "feature_mean", "feature_std", "target_mean", "target_std",
)  # fmt: skip


@dataclass
class HistModel:
    """A trained hist_sd model (HiST or a baseline) and the settings needed to apply it.

    Created by :func:`hist_sd.tl.train`; restored by :func:`hist_sd.tl.load_model`.

    Attributes
    ----------
    net
        The torch module (from :mod:`hist_sd.models`, or a linear map for ``method="ridge"``).
    method
        ``"hist"``, ``"hist_noattn"``, ``"hist_noconvmixer"``, ``"ridge"``, ``"mlp"``, ``"transformer"`` or ``"gnn"``.
    task
        ``"expression"`` (one output per gene) or ``"tumor"`` (one logit).
    genes
        Output names: genes, or the truth column for the tumour task.
    features_key, encoder, feature_dim
        Which ``obsm`` features the model reads, the encoder that made them and their dimension.
    patch_um, mpp
        Side in µm of the patches the training features were computed from, and the µm per pixel of the training
        images (``None`` when the features carry no record); prediction refuses features of another patch size.
    spacing_um
        Centre-to-centre distance in µm of the training spots (200 for legacy ST, 100 for Visium); spatial
        models warn when a slide's spots or tiles are spaced otherwise.
    feature_mean, feature_std, target_mean, target_std
        Standardisation learned on the training spots.
    grid
        Grid settings: ``pad_multiple`` and the resolved ``layout`` of the training slides (``"st"``, ``"tiles"``
        or ``"visium"``); prediction refuses slides of an incompatible layout (a square grid against Visium's
        hexagonal one).
    feature_norm
        ``"slide"``: features are first standardised within each slide (removes stain and scanner shifts
        between slides); ``"global"``: only the training-set standardisation.
    projection
        ``(feature_dim, k)`` PCA projection (whitened) learned on the training spots and applied after
        standardisation, or ``None``.
    params
        Training parameters; ``history`` the loss per epoch.
    """

    net: torch.nn.Module
    method: str
    task: str
    genes: list[str]
    features_key: str
    encoder: str
    feature_dim: int
    feature_mean: np.ndarray
    feature_std: np.ndarray
    target_mean: np.ndarray
    target_std: np.ndarray
    grid: dict[str, Any] = field(default_factory=lambda: {"pad_multiple": 16, "layout": "st"})
    patch_um: float | list[float] | None = None
    mpp: float | None = None
    spacing_um: float | None = None
    feature_norm: str = "global"
    projection: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)

    @property
    def spec(self) -> MethodSpec:
        """The method's :class:`~hist_sd.model.MethodSpec`."""
        return get_method(self.method)

    @property
    def task_spec(self) -> TaskSpec:
        """The task's :class:`~hist_sd.model.TaskSpec`."""
        return get_task(self.task)

    @property
    def kind(self) -> str:
        """How the model consumes a slide: ``"grid"``, ``"spot"``, ``"set"`` or ``"graph"``."""
        return self.spec.input

    @property
    def layout(self) -> str:
        """The grid layout of the training slides."""
        return str(self.grid.get("layout", "auto"))

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.net.parameters())
        outputs = f"n_outputs={len(self.genes)}" if self.task_spec.needs_genes else f"truth_key={self.genes[0]!r}"
        return (
            f"HistModel(method={self.method!r}, task={self.task!r}, {outputs}, "
            f"features_key={self.features_key!r}, encoder={self.encoder!r}, feature_dim={self.feature_dim}, "
            f"layout={self.layout!r}, patch_um={self.patch_um}, n_params={n:,})"
        )

    # ------------------------------------------------------------------ application
    def predict_section(self, section: Section, *, device: torch.device | None = None) -> np.ndarray:
        """Network outputs for one prepared section, ``(n_obs, n_outputs)`` in target units (logits for tumour)."""
        import torch

        if section.features.shape[1] != self.feature_dim:
            raise ValueError(
                f"The model was trained on {self.feature_dim}-d features ({self.encoder!r}, key "
                f"{self.features_key!r}); this slide has {section.features.shape[1]}-d features."
            )
        device = device or torch.device("cpu")
        self.net.to(device).eval()
        feats = slide_normalise(section) if self.feature_norm == "slide" else section.features
        x = (feats - self.feature_mean) / self.feature_std
        if self.projection is not None:
            x = x @ self.projection
        with torch.inference_mode():
            out = forward_section(
                self.net, self.kind, section, x.astype(np.float32), device=device,
                tta=bool(self.params.get("tta", False)), pad_multiple=int(self.grid.get("pad_multiple", 16)),
            )
        return out * self.target_std + self.target_mean

    def check_data(
        self,
        *,
        features_key: str,
        feature_dim: int,
        encoder: str | None,
        patch_um: float | Sequence[float] | None = None,
        layout: str | None = None,
    ) -> None:
        """Refuse data the model was not trained for (feature dimension, encoder, patch size, grid layout).

        Parameters
        ----------
        features_key
            ``obsm`` key of the data's features (for messages).
        feature_dim
            Their dimension.
        encoder
            The encoder recorded with them (``None``: unknown, not checked).
        patch_um
            Their patch side in µm (``None``: unknown, not checked).
        layout
            The data's resolved grid layout (``None``: unknown, not checked).
        """
        if feature_dim != self.feature_dim:
            raise ValueError(
                f"Checkpoint mismatch: the model expects {self.feature_dim}-d features from encoder "
                f"{self.encoder!r}, but `obsm[{features_key!r}]` has {feature_dim} dimensions. Recompute features "
                f"with `hs.pp.features(..., encoder={self.encoder!r})`."
            )
        if encoder and self.encoder and encoder != self.encoder:
            raise ValueError(
                f"Checkpoint mismatch: the model was trained on features from encoder {self.encoder!r}, "
                f"but `obsm[{features_key!r}]` was computed with {encoder!r}."
            )
        theirs, ours = patch_sizes(patch_um), patch_sizes(self.patch_um)
        if theirs is not None and ours is not None and not same_patches(theirs, ours, rtol=PATCH_TOLERANCE):
            raise ValueError(
                f"Checkpoint mismatch: the model was trained on features of {patch_text(ours)} µm patches, but "
                f"`obsm[{features_key!r}]` was computed from {patch_text(theirs)} µm patches. Recompute them with "
                f"`hs.pp.features(..., patch_um={patch_text(ours)})`."
            )
        known = self.layout if self.layout != "auto" else None
        if layout is not None and known is not None and (layout in SQUARE_LAYOUTS) != (known in SQUARE_LAYOUTS):
            raise ValueError(
                f"Checkpoint mismatch: the model was trained on a {known!r} spot grid, but the data are laid out "
                f"as {layout!r}; a model learned on a square grid cannot be applied to Visium's hexagonal one "
                "(or the other way round)."
            )

    def check_genes(self, genes: Sequence[str]) -> None:
        """Refuse a gene list that is not the model's."""
        genes = list(genes)
        if genes != self.genes:
            missing = [g for g in genes if g not in set(self.genes)]
            extra = [g for g in self.genes if g not in set(genes)]
            raise ValueError(
                f"Checkpoint mismatch: the model predicts {len(self.genes)} genes, the data ask for {len(genes)}"
                + (f"; not in the model: {missing[:10]}" if missing else "")
                + (f"; only in the model: {extra[:10]}" if extra else "")
                + ("; same genes in another order" if not missing and not extra else "")
                + "."
            )

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """Everything :func:`load_model` needs, as tensors and plain Python values (loadable with ``weights_only``)."""
        import torch

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_class": type(self.net).__name__,
            "hparams": dict(self.net.hparams),
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "method": self.method,
            "task": self.task,
            "genes": list(self.genes),
            "features_key": self.features_key,
            "encoder": self.encoder,
            "feature_dim": int(self.feature_dim),
            "feature_mean": torch.from_numpy(np.asarray(self.feature_mean, np.float32)),
            "feature_std": torch.from_numpy(np.asarray(self.feature_std, np.float32)),
            "target_mean": torch.from_numpy(np.asarray(self.target_mean, np.float32)),
            "target_std": torch.from_numpy(np.asarray(self.target_std, np.float32)),
            "grid": dict(self.grid),
            "patch_um": self.patch_um,
            "mpp": self.mpp,
            "spacing_um": self.spacing_um,
            "feature_norm": self.feature_norm,
            "projection": None if self.projection is None else torch.from_numpy(np.asarray(self.projection, np.float32)),
            "params": {k: v for k, v in self.params.items() if isinstance(v, str | int | float | bool | list | type(None))},
            "history": [float(h) for h in self.history],
        }

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Save the model to ``path`` (a ``.pt`` file), atomically; an existing file needs ``overwrite=True``.

        Parameters
        ----------
        path
            Destination file.
        overwrite
            Replace an existing file.
        """
        return save_state(self.state(), path, overwrite=overwrite, what="model")

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HistModel:
        """Rebuild a model from :meth:`state`."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(
                "This file is not a hist_sd model checkpoint (no 'format': 'hist_sd.model' entry). "
                "Encoder weights go to `hs.pp.features(..., weights=...)`, not to `load_model`."
            )
        check_header(state, version=FORMAT_VERSION, required=_REQUIRED, writer="HistModel.save")
        check_finite(state, ("feature_mean", "feature_std", "target_mean", "target_std", "projection"))
        net = rebuild_net(state)
        return cls(
            net=net,
            method=state["method"],
            task=state["task"],
            genes=list(state["genes"]),
            features_key=state["features_key"],
            encoder=state["encoder"],
            feature_dim=int(state["feature_dim"]),
            feature_mean=state["feature_mean"].numpy(),
            feature_std=state["feature_std"].numpy(),
            target_mean=state["target_mean"].numpy(),
            target_std=state["target_std"].numpy(),
            grid=dict(state.get("grid", {})),
            patch_um=patch_record(state.get("patch_um")),
            mpp=None if state.get("mpp") is None else float(state["mpp"]),
            spacing_um=None if state.get("spacing_um") is None else float(state["spacing_um"]),
            feature_norm=str(state.get("feature_norm", "global")),
            projection=None if state.get("projection") is None else state["projection"].numpy(),
            params=dict(state.get("params", {})),
            history=list(state.get("history", [])),
        )


def load_model(
    path: str | os.PathLike[str],
    *,
    genes: Sequence[str] | None = None,
    feature_dim: int | None = None,
) -> HistModel | SurvivalModel:
    """Load a model saved with :meth:`HistModel.save` or :meth:`SurvivalModel.save`.

    The file is read with ``torch.load(weights_only=True)``: no code in it is executed.

    Parameters
    ----------
    path
        The ``.pt`` file.
    genes
        When given, the genes the caller expects; a checkpoint for other genes is refused.
    feature_dim
        When given, the feature dimension of the caller's data; a checkpoint for another dimension is refused.

    Returns
    -------
    The model (a :class:`HistModel`, or a :class:`~hist_sd.model.SurvivalModel` for a survival checkpoint), on
    the CPU, in eval mode.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path`: no model file at {str(path)!r}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(f"`path`: {str(path)!r} is not a loadable hist_sd checkpoint ({err}).") from err
    from hist_sd.model._survival import SURVIVAL_FORMAT, SurvivalModel

    try:
        if isinstance(state, dict) and state.get("format") == SURVIVAL_FORMAT:
            survival = SurvivalModel.from_state(state)
            if feature_dim is not None and survival.inputs == "features" and int(feature_dim) != survival.feature_dim:
                raise ValueError(
                    f"feature dimension mismatch: the model was trained on {survival.feature_dim}-d features, "
                    f"the caller's are {int(feature_dim)}-d."
                )
            return survival
        from hist_sd.model._outcome import OUTCOME_FORMAT, OutcomeModel

        if isinstance(state, dict) and state.get("format") == OUTCOME_FORMAT:
            return OutcomeModel.from_state(state)  # type: ignore[return-value]
        model = HistModel.from_state(state)
    except ValueError as err:
        raise ValueError(f"`path`: {str(path)!r}: {err}") from err
    if genes is not None:
        model.check_genes(genes)
    if feature_dim is not None:
        model.check_data(features_key=model.features_key, feature_dim=int(feature_dim), encoder=None)
    return model
