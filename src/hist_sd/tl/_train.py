"""``hs.tl.train``: fit HiST or a baseline on slides (a thin verb over :mod:`hist_sd.model` and :mod:`hist_sd.train`)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hist_sd import _constants as C
from hist_sd._core._data import as_sections, resolve
from hist_sd._core._validate import patch_record, patch_sizes, patch_text, same_patches
from hist_sd._core._warnings import UnrecordedFeaturesWarning
from hist_sd._docs import doc_params
from hist_sd.model import HistModel, get_method, get_task, prepare_section
from hist_sd.model._section import feature_params

if TYPE_CHECKING:
    from anndata import AnnData
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

__all__ = ["train"]


@doc_params
def train(
    sdatas: AnnData | SpatialData | Sequence[AnnData | SpatialData] | Mapping[str, AnnData | SpatialData],
    *,
    genes: Sequence[str] | None = None,
    task: str = "expression",
    method: str = "hist",
    features_key: str = C.FEATURES,
    truth_key: str = C.TUMOR,
    epochs: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 8,
    augment: bool = True,
    preset: str = "compact",
    model_kwargs: Mapping[str, Any] | None = None,
    feature_norm: str = "slide",
    pca: int | str | None = "auto",
    crop: int | None = 16,
    input_noise: float | None = None,
    corr_weight: float | None = None,
    tta: bool = True,
    ridge_alphas: Sequence[float] | None = None,
    pad_multiple: int = 16,
    layout: str = "auto",
    device: str = "auto",
    seed: int = 0,
    table_key: str | None = None,
    progress: bool = True,
) -> HistModel:
    """Train HiST (or a baseline) to predict expression or tumour spots from spot features.

    Parameters
    ----------
    sdatas
        Training slides (SpatialData or AnnData), each with features in ``obsm[features_key]``
        (:func:`hist_sd.pp.features`) and raw counts (``.X`` or ``layers["counts"]``) or tumour labels.
    genes
        Genes to predict (``task="expression"``); e.g. from :func:`hist_sd.pp.spatial_genes`.
    task
        ``"expression"`` (regression, masked MSE on standardised log-normalised expression) or ``"tumor"``
        (segmentation, masked binary cross-entropy against ``obs[truth_key]``).
    method
        A registered method (``hs.model.METHODS``): ``"hist"`` (attention U-Net with ConvMixer), its ablations
        ``"hist_noattn"`` / ``"hist_noconvmixer"``, or a baseline: ``"ridge"`` (PCA + ridge, HEST-benchmark
        protocol; expression only), ``"mlp"`` (per-spot, ST-Net style), ``"transformer"`` (HisToGene style),
        ``"gnn"`` (graph attention over the layout's neighbours, Hist2ST/THItoGene style).
    features_key
        ``obsm`` key of the spot features.
    truth_key
        ``obs`` column with tumour labels for ``task="tumor"``.
    epochs
        Training epochs (default: the method's, ``hs.model.METHODS[method].epochs``; 400 for HiST). Fixed in
        advance: no epoch is ever chosen on held-out data. With ``crop``, an epoch of a grid model draws about two
        windows' worth of in-tissue spots from every slide.
    lr, weight_decay
        Adam settings; the learning rate follows cosine annealing over the epochs (the paper's recipe).
    batch_size
        Slides (or ``crop`` windows) per step for grid and set models.
    augment
        Random flips, 90° rotations (square grids) and shifts of the spot grid.
    preset
        Size of HiSTNet: ``"compact"`` (3 levels of base width 32, 3 ConvMixer blocks, a per-spot skip from the
        input to the output; generalises best across
        patients from a few slides and trains on a CPU), ``"small"`` (5 levels of base width 16) or ``"paper"``
        (the published widths).
    model_kwargs
        Extra keyword arguments of the network (overriding the preset).
    feature_norm
        ``"slide"`` standardises features within each slide before anything else (training and prediction
        alike), which removes stain and scanner shifts between slides and patients; ``"global"`` uses only the
        training-set standardisation.
    pca
        Neural methods: project the standardised features onto this many whitened principal components learned
        on the training spots before the network; ``None`` feeds all feature channels. A 1280-d input lets a
        network memorise slide-specific signal from a handful of slides; a low-dimensional input generalises far
        better across patients. ``method="ridge"``: the principal components kept before the ridge. ``"auto"``:
        the method's default (32 for the networks, 256 for ridge).
    crop
        Grid models: train on random ``crop`` x ``crop`` windows of the spot grid (rounded up to
        ``pad_multiple``) centred on in-tissue spots instead of whole slides; many distinct samples per slide,
        and the network learns local tissue context rather than a slide's layout. ``None``: whole slides.
        Ignored by the other methods.
    input_noise
        Standard deviation of Gaussian noise added to the network inputs (the whitened PCA components, or the
        standardised features) during training; a strong regulariser for few training slides. Default: the
        method's (1 for HiST and its ablations, 0 for the baselines).
    corr_weight
        ``task="expression"``: weight of a correlation term, the mean over genes of ``1 - Pearson r`` within each
        mini-batch, added to the MSE. Default: the method's (1 for HiST and its ablations, 0 for the baselines).
    tta
        Grid models: predict as the mean over the grid's symmetries (the 8 flips and transposes of a square
        grid, the 4 flips of a Visium grid), the same ones used for augmentation.
    ridge_alphas
        ``method="ridge"``: the penalties searched by generalised cross-validation on the training spots
        (default: 37 values from 1e-3 to 1e6, evenly spaced in log).
    pad_multiple, layout
        Grid settings (see :func:`hist_sd.pp.grid`).
    %(device)s
    seed
        Makes training repeatable.
    %(tables_key)s
    %(progress)s

    Returns
    -------
    The trained :class:`~hist_sd.tl.HistModel`; ``model.save(path)`` writes it.
    """
    spec = get_method(method)
    tspec = get_task(task)
    if tspec.needs_genes and not genes:
        raise ValueError(f"`genes` must list the genes to predict for task={task!r}.")
    datas = as_sections(sdatas)
    tables = [resolve(d, table_key)[1] for d in datas.values()]
    sections = [
        prepare_section(d, features_key=features_key, targets=tspec, genes=genes, truth_key=truth_key,
                        layout=layout, pad_multiple=pad_multiple, table_key=table_key, name=name)
        for name, d in datas.items()
    ]
    recorded = feature_record(tables, features_key)
    from hist_sd.train import fit_sections

    return fit_sections(
        sections, genes=tspec.outputs(genes, truth_key), task=task, method=spec.name, features_key=features_key,
        **recorded, epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size, augment=augment,
        preset=preset, model_kwargs=model_kwargs, feature_norm=feature_norm, pca=pca, crop=crop,
        input_noise=input_noise, corr_weight=corr_weight, tta=tta, ridge_alphas=ridge_alphas,
        pad_multiple=pad_multiple, device=device, seed=seed, show_progress=progress,
    )


def feature_record(tables: Sequence[AnnData], features_key: str) -> dict[str, Any]:
    """The encoder, patch size (µm), mpp and spot spacing (µm) of the training slides' features.

    One encoder and patch size for all slides. Returns ``{"encoder", "patch_um", "mpp", "spacing_um"}``:
    ``"unknown"`` / ``None`` when the features carry no record (with an
    :class:`~hist_sd.UnrecordedFeaturesWarning`).
    """
    params = [feature_params(t, features_key) for t in tables]
    names = {str(p.get("encoder", "")) for p in params} - {""}
    if len(names) > 1:
        raise ValueError(f"`obsm[{features_key!r}]` was computed with different encoders across slides: {sorted(names)}.")
    if any("encoder" not in p for p in params):
        warnings.warn(
            f"`obsm[{features_key!r}]` of some training slides has no record of its encoder "
            f"(`uns[{features_key!r}]['params']['encoder']`, written by `hs.pp.features`): the model cannot check "
            "that the features of new slides come from the same encoder.",
            UnrecordedFeaturesWarning,
            stacklevel=3,
        )
    patches = list(dict.fromkeys(p for p in (patch_sizes(q.get("patch_um")) for q in params) if p is not None))
    if any(not same_patches(p, patches[0]) for p in patches[1:]):
        shown = ", ".join(patch_text(p) for p in patches)
        raise ValueError(
            f"`obsm[{features_key!r}]` was computed from patches of different sizes across slides ({shown} µm); "
            "recompute the features with one `patch_um`."
        )
    mpps = [float(p["mpp"]) for p in params if _is_number(p.get("mpp"))]
    spacings = [float(t.uns.get(C.UNS_KEY, {}).get(C.SPOT_SPACING_UM, np.nan)) for t in tables]
    spacings = [v for v in spacings if _is_number(v)]
    return {
        "encoder": names.pop() if names else "unknown",
        "patch_um": patch_record(patches[0]) if patches else None,
        "mpp": float(np.median(mpps)) if mpps else None,
        "spacing_um": float(np.median(spacings)) if spacings else None,
    }


def _is_number(value: Any) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False
