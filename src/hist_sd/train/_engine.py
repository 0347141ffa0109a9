"""The training engine: fits any registered method on prepared sections, everything learned inside the fold."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from hist_sd._core._runtime import get_device, progress, set_seed
from hist_sd.model import HistModel, Section, get_method, get_task
from hist_sd.model._section import slide_normalise
from hist_sd.train._batchers import BATCHERS, batch_context
from hist_sd.train._fitting import DEFAULT_RIDGE_ALPHAS, fit_ridge, pca_projection, standardise, standardised

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("hist_sd")

__all__ = ["fit_sections"]

#: ``pca="auto"``: the method's default (:attr:`hist_sd.model.MethodSpec.pca`).
AUTO = "auto"


def _check_options(
    sections: Sequence[Section], *, feature_norm: str, epochs: int, input_noise: float, corr_weight: float,
    crop: int | None, batch_size: int, pca: int | None,
) -> None:
    if not sections:
        raise ValueError("No training sections.")
    dims = {s.features.shape[1] for s in sections}
    if len(dims) != 1:
        raise ValueError(f"Training slides have features of different dimensions: {sorted(dims)}.")
    if any(s.targets is None for s in sections):
        raise ValueError("Every training section needs targets.")
    if sum(int(s.in_tissue.sum()) for s in sections) < 2:
        raise ValueError("Training needs at least two in-tissue spots.")
    if feature_norm not in ("slide", "global"):
        raise ValueError(f"`feature_norm` must be 'slide' or 'global', got {feature_norm!r}.")
    if epochs < 0:
        raise ValueError(f"`epochs` must be >= 0, got {epochs}.")
    for name, value in (("input_noise", input_noise), ("corr_weight", corr_weight)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative number, got {value}.")
    if crop is not None and int(crop) < 1:
        raise ValueError(f"`crop` must be a positive number of grid cells or None, got {crop}.")
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    if pca is not None and (isinstance(pca, bool) or not isinstance(pca, int | np.integer) or pca < 1):
        raise ValueError(f"`pca` must be 'auto', None or a positive number of components, got {pca!r}.")


def _layout(sections: Sequence[Section]) -> str:
    """The training layout: one geometry (square grids, or Visium) for all slides."""
    layouts = sorted({s.layout for s in sections})
    if len({s.square for s in sections}) > 1:
        raise ValueError(f"Training slides mix square-grid and Visium layouts ({layouts}); train on one geometry.")
    return layouts[0] if len(layouts) == 1 else "st"


def fit_sections(
    sections: Sequence[Section],
    *,
    genes: list[str],
    task: str,
    method: str,
    features_key: str,
    encoder: str,
    patch_um: float | None = None,
    mpp: float | None = None,
    spacing_um: float | None = None,
    epochs: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 8,
    augment: bool = True,
    preset: str = "compact",
    model_kwargs: Mapping[str, Any] | None = None,
    feature_norm: str = "slide",
    pca: int | str | None = AUTO,
    crop: int | None = 16,
    input_noise: float | None = None,
    corr_weight: float | None = None,
    tta: bool = True,
    ridge_alphas: Sequence[float] | None = None,
    pad_multiple: int = 16,
    device: str = "auto",
    seed: int = 0,
    show_progress: bool = True,
) -> HistModel:
    """Fit ``method`` for ``task`` on prepared sections (the engine behind ``hs.tl.train`` and ``cross_validate``).

    The options are those of :func:`hist_sd.tl.train`; defaults marked ``None`` (``epochs``, ``input_noise``,
    ``corr_weight``) and ``pca="auto"`` come from the method's :class:`~hist_sd.model.MethodSpec`.
    """
    import torch

    spec = get_method(method)
    tspec = get_task(task)
    spec.check_task(tspec)
    epochs = spec.epochs if epochs is None else int(epochs)
    input_noise = float(spec.input_noise if input_noise is None else input_noise)
    corr_weight = float(spec.corr_weight if corr_weight is None else corr_weight) if tspec.corr_loss else 0.0
    pca = spec.pca if pca == AUTO else pca
    _check_options(sections, feature_norm=feature_norm, epochs=epochs, input_noise=input_noise,
                   corr_weight=corr_weight, crop=crop, batch_size=batch_size, pca=pca)
    if feature_norm == "slide":
        sections = [replace(s, features=slide_normalise(s)) for s in sections]
    d = sections[0].features.shape[1]
    set_seed(seed)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    dev = get_device(device)
    fm, fs, tm, ts = standardise(sections, tspec)
    std_sections = [standardised(s, fm, fs, tm, ts) for s in sections]
    projection = None
    if pca and spec.fit == "gradient":
        projection = pca_projection(std_sections, int(pca))
        std_sections = [replace(s, features=(s.features @ projection).astype(np.float32)) for s in std_sections]
    n_in = d if projection is None else projection.shape[1]
    net = spec.network(n_in, sections[0].targets.shape[1], preset=preset, **dict(model_kwargs or {}))
    model = HistModel(
        net=net, method=method, task=task, genes=list(genes), features_key=features_key, encoder=encoder,
        feature_dim=d, feature_mean=fm, feature_std=fs, target_mean=tm, target_std=ts,
        grid={"pad_multiple": int(pad_multiple), "layout": _layout(sections)},
        patch_um=patch_um, mpp=mpp, spacing_um=spacing_um, feature_norm=feature_norm, projection=projection,
        params={
            "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size, "augment": augment,
            "preset": preset, "seed": seed, "crop": crop, "input_noise": input_noise, "corr_weight": corr_weight,
            "tta": bool(tta), "pca": None if pca is None else int(pca),
            "train_sections": [s.name for s in sections],
            "n_train_spots": int(sum(int(s.in_tissue.sum()) for s in sections)),
        },
    )
    t0 = time.perf_counter()
    if spec.fit == "ridge":
        fit_ridge(model, std_sections, n_components=pca,
                  alphas=DEFAULT_RIDGE_ALPHAS if ridge_alphas is None else ridge_alphas)
    else:
        _fit_gradient(model, std_sections, epochs=epochs, lr=lr, weight_decay=weight_decay,
                      batch_size=batch_size, augment=augment, rng=rng, device=dev, show_progress=show_progress,
                      ctx=batch_context(spec.input, std_sections, pad_multiple=int(pad_multiple), crop=crop))
    model.params["train_seconds"] = round(time.perf_counter() - t0, 3)
    model.net.to("cpu").eval()
    logger.info("trained %s (%s) on %d sections in %.1f s", method, task, len(sections), model.params["train_seconds"])
    return model


def _fit_gradient(
    model: HistModel, sections: Sequence[Section], *, epochs: int, lr: float, weight_decay: float, batch_size: int,
    augment: bool, rng: np.random.Generator, device: torch.device, show_progress: bool, ctx: dict[str, Any],
) -> None:
    """Adam with cosine annealing over ``epochs``; the loss per epoch goes to ``model.history``."""
    import torch

    net = model.net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    batches = BATCHERS[model.kind]
    task_loss = model.task_spec.loss
    weight = float(model.params["corr_weight"])

    def loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return task_loss(pred, target, mask, weight)

    bar = progress(range(epochs), enabled=show_progress, desc=f"training {model.method}", leave=False)
    for _ in bar:
        net.train()
        losses = []
        for step_loss in batches(net, sections, ctx, loss, batch_size=batch_size, augment=augment,
                                 noise=float(model.params["input_noise"]), rng=rng, device=device):
            opt.zero_grad(set_to_none=True)
            step_loss.backward()
            opt.step()
            losses.append(float(step_loss.detach()))
        sched.step()
        model.history.append(float(np.mean(losses)) if losses else float("nan"))
        if show_progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{model.history[-1]:.4f}")
