"""Training HiST and the baselines on prepared sections (``hs.tl.train``)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from hist_sd import _constants as C
from hist_sd._utils import as_sections, get_device, progress, set_seed
from hist_sd.tl._data import Section, check_feature_params, prepare_section, resolve
from hist_sd.tl._model import METHOD_KINDS, HistModel

if TYPE_CHECKING:
    import torch
    from anndata import AnnData
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

#: Default number of epochs per method (an epoch is one pass over the training slides, or spots for ``"mlp"``).
DEFAULT_EPOCHS: dict[str, int] = {
    "hist": 400,
    "hist_noattn": 400,
    "hist_noconvmixer": 400,
    "mlp": 60,
    "transformer": 300,
    "gnn": 300,
    "ridge": 0,
}
#: Spots per mini-batch for the per-spot MLP.
SPOT_BATCH = 256
#: Default standard deviation of the Gaussian noise added to the (whitened) network inputs during training.
DEFAULT_INPUT_NOISE: dict[str, float] = {"hist": 1.0, "hist_noattn": 1.0, "hist_noconvmixer": 1.0}
#: Default weight of the correlation term ``mean over genes of (1 - Pearson r)`` added to the expression MSE.
DEFAULT_CORR_WEIGHT: dict[str, float] = {"hist": 1.0, "hist_noattn": 1.0, "hist_noconvmixer": 1.0}


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
    pca: int | None = 32,
    crop: int | None = 16,
    input_noise: float | None = None,
    corr_weight: float | None = None,
    tta: bool = True,
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
        ``"hist"`` (attention U-Net with ConvMixer), its ablations ``"hist_noattn"`` / ``"hist_noconvmixer"``, or a
        baseline: ``"ridge"`` (PCA + ridge, HEST-benchmark protocol), ``"mlp"`` (per-spot, ST-Net style),
        ``"transformer"`` (HisToGene style), ``"gnn"`` (graph attention, Hist2ST/THItoGene style).
    features_key
        ``obsm`` key of the spot features.
    truth_key
        ``obs`` column with tumour labels for ``task="tumor"``.
    epochs
        Training epochs (default per method, :data:`DEFAULT_EPOCHS`). With ``crop``, an epoch of a grid model
        draws about two windows' worth of in-tissue spots from every slide.
    lr, weight_decay
        Adam settings; the learning rate follows cosine annealing over the epochs (the paper's recipe).
    batch_size
        Slides (or ``crop`` windows) per step for grid and set models.
    augment
        Random flips, 90° rotations (square grids) and shifts of the spot grid.
    preset
        Size of HiSTNet: ``"compact"`` (3 levels of base width 32, 3 ConvMixer blocks; generalises best across
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
        on the training spots (the same in-fold reduction as the ridge baseline) before the network; ``None``
        feeds all feature channels. A 1280-d input lets a network memorise slide-specific signal from a handful
        of slides; a low-dimensional input generalises far better across patients.
    crop
        Grid models: train on random ``crop`` x ``crop`` windows of the spot grid (rounded up to
        ``pad_multiple``) centred on in-tissue spots instead of whole slides; many distinct samples per slide,
        and the network learns local tissue context rather than a slide's layout. ``None``: whole slides.
        Ignored by the other methods.
    input_noise
        Standard deviation of Gaussian noise added to the network inputs (the whitened PCA components, or the
        standardised features) during training; a strong regulariser for few training slides. Default per method,
        :data:`DEFAULT_INPUT_NOISE` (1 for HiST and its ablations, 0 for the baselines).
    corr_weight
        ``task="expression"``: weight of a correlation term, the mean over genes of ``1 - Pearson r`` within each
        mini-batch, added to the MSE. Default per method, :data:`DEFAULT_CORR_WEIGHT` (1 for HiST and its
        ablations, 0 for the baselines).
    tta
        Grid models: predict as the mean over the grid's symmetries (the 8 flips and transposes of a square
        grid, the 4 flips of a Visium grid), the same ones used for augmentation.
    pad_multiple, layout
        Grid settings (see :func:`hist_sd.pp.grid`).
    device
        ``"auto"`` (CUDA, then MPS, then CPU) or a torch device.
    seed
        Makes training repeatable.
    table_key
        Table of each SpatialData.
    progress
        Show a progress bar.

    Returns
    -------
    The trained :class:`~hist_sd.tl.HistModel`; ``model.save(path)`` writes it.
    """
    if method not in METHOD_KINDS:
        raise ValueError(f"`method` must be one of {sorted(METHOD_KINDS)}, got {method!r}.")
    if task == "expression" and not genes:
        raise ValueError("`genes` must list the genes to predict for task='expression'.")
    datas = as_sections(sdatas)
    tables = [resolve(d, table_key)[1] for d in datas.values()]
    encoder = _encoder_name(tables, features_key)
    sections = [
        prepare_section(
            d,
            features_key=features_key,
            genes=genes,
            task=task,
            truth_key=truth_key,
            layout=layout,
            pad_multiple=pad_multiple,
            table_key=table_key,
            name=name,
        )
        for name, d in datas.items()
    ]
    return fit_sections(
        sections,
        genes=list(genes) if task == "expression" else [truth_key],
        task=task,
        method=method,
        features_key=features_key,
        encoder=encoder,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        augment=augment,
        preset=preset,
        model_kwargs=model_kwargs,
        feature_norm=feature_norm,
        pca=pca,
        crop=crop,
        input_noise=input_noise,
        corr_weight=corr_weight,
        tta=tta,
        pad_multiple=pad_multiple,
        layout=layout,
        device=device,
        seed=seed,
        show_progress=progress,
    )


def _encoder_name(tables: Sequence[AnnData], features_key: str) -> str:
    names = {str(check_feature_params(t, features_key).get("encoder", "")) for t in tables}
    names.discard("")
    if len(names) > 1:
        raise ValueError(f"`obsm[{features_key!r}]` was computed with different encoders across slides: {sorted(names)}.")
    return names.pop() if names else "unknown"


def _standardise(sections: Sequence[Section], task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.concatenate([s.features[s.in_tissue] for s in sections]).astype(np.float64)
    fm, fs = x.mean(0), x.std(0)
    fs[fs < 1e-6] = 1.0
    if task == "expression":
        y = np.concatenate([s.targets[s.in_tissue] for s in sections]).astype(np.float64)
        tm, ts = y.mean(0), y.std(0)
        ts[ts < 1e-3] = 1.0
    else:
        tm, ts = np.zeros(1), np.ones(1)
    return fm.astype(np.float32), fs.astype(np.float32), tm.astype(np.float32), ts.astype(np.float32)


def build_net(method: str, in_channels: int, out_channels: int, *, preset: str, model_kwargs: Mapping[str, Any] | None) -> torch.nn.Module:
    """The network of ``method`` (see :func:`train`)."""
    from hist_sd import models

    kw = dict(model_kwargs or {})
    if method.startswith("hist"):
        if method == "hist_noattn":
            kw.setdefault("attention", False)
        elif method == "hist_noconvmixer":
            kw.setdefault("convmixer", False)
        return models.HiSTNet.from_preset(preset, in_channels, out_channels, **kw)
    if method == "mlp":
        return models.SpotMLP(in_channels, out_channels, **kw)
    if method == "transformer":
        return models.SpotTransformer(in_channels, out_channels, **kw)
    if method == "gnn":
        return models.SpotGAT(in_channels, out_channels, **kw)
    if method == "ridge":
        return models.SpotLinear(in_channels, out_channels)
    raise ValueError(f"`method` must be one of {sorted(METHOD_KINDS)}, got {method!r}.")


def fit_sections(
    sections: Sequence[Section],
    *,
    genes: list[str],
    task: str,
    method: str,
    features_key: str,
    encoder: str,
    epochs: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 8,
    augment: bool = True,
    preset: str = "compact",
    model_kwargs: Mapping[str, Any] | None = None,
    feature_norm: str = "slide",
    pca: int | None = 32,
    crop: int | None = 16,
    input_noise: float | None = None,
    corr_weight: float | None = None,
    tta: bool = True,
    pad_multiple: int = 16,
    layout: str = "auto",
    device: str = "auto",
    seed: int = 0,
    show_progress: bool = True,
) -> HistModel:
    """Fit ``method`` on prepared sections (the engine behind :func:`train` and :func:`cross_validate`)."""
    import torch

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
    if feature_norm == "slide":
        from hist_sd.tl._data import slide_normalise

        sections = [replace(s, features=slide_normalise(s)) for s in sections]
    d = dims.pop()
    n_out = sections[0].targets.shape[1]
    epochs = DEFAULT_EPOCHS[method] if epochs is None else int(epochs)
    if epochs < 0:
        raise ValueError(f"`epochs` must be >= 0, got {epochs}.")
    input_noise = float(DEFAULT_INPUT_NOISE.get(method, 0.0) if input_noise is None else input_noise)
    corr_weight = float(DEFAULT_CORR_WEIGHT.get(method, 0.0) if corr_weight is None else corr_weight)
    for name, value in (("input_noise", input_noise), ("corr_weight", corr_weight)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative number, got {value}.")
    if crop is not None and int(crop) < 1:
        raise ValueError(f"`crop` must be a positive number of grid cells or None, got {crop}.")
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    set_seed(seed)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    dev = get_device(device)
    fm, fs, tm, ts = _standardise(sections, task)
    std_sections = [_standardised(s, fm, fs, tm, ts, task) for s in sections]
    projection = None
    if pca and method != "ridge":
        projection = _pca_projection(std_sections, int(pca))
        std_sections = [replace(s, features=(s.features @ projection).astype(np.float32)) for s in std_sections]
    n_in = d if projection is None else projection.shape[1]
    net = build_net(method, n_in, n_out, preset=preset, model_kwargs=model_kwargs)
    model = HistModel(
        net=net,
        method=method,
        task=task,
        genes=list(genes),
        features_key=features_key,
        encoder=encoder,
        feature_dim=d,
        feature_mean=fm,
        feature_std=fs,
        target_mean=tm,
        target_std=ts,
        grid={"pad_multiple": int(pad_multiple), "layout": layout},
        feature_norm=feature_norm,
        projection=projection,
        params={
            "epochs": epochs,
            "lr": lr,
            "weight_decay": weight_decay,
            "batch_size": batch_size,
            "augment": augment,
            "preset": preset,
            "seed": seed,
            "crop": crop,
            "input_noise": input_noise,
            "corr_weight": corr_weight if task == "expression" else 0.0,
            "tta": bool(tta),
            "pca": pca if method != "ridge" else None,
            "train_sections": [s.name for s in sections],
            "n_train_spots": int(sum(int(s.in_tissue.sum()) for s in sections)),
        },
    )
    t0 = time.perf_counter()
    if method == "ridge":
        _fit_ridge(model, std_sections)
    else:
        _fit_torch(model, std_sections, epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
                   augment=augment, rng=rng, device=dev, show_progress=show_progress)
    model.params["train_seconds"] = round(time.perf_counter() - t0, 3)
    model.net.to("cpu").eval()
    logger.info("trained %s (%s) on %d sections in %.1f s", method, task, len(sections), model.params["train_seconds"])
    return model


def _pca_projection(sections: Sequence[Section], k: int) -> np.ndarray:
    """Whitened PCA projection ``(d, k)`` of the (standardised) in-tissue training features."""
    x = np.concatenate([s.features[s.in_tissue] for s in sections]).astype(np.float64)
    x = x - x.mean(0)
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    k = min(k, len(sv))
    scale = sv[:k] / np.sqrt(max(len(x) - 1, 1))
    scale[scale < 1e-8] = 1.0
    return (vt[:k].T / scale).astype(np.float32)


def _standardised(s: Section, fm: np.ndarray, fs: np.ndarray, tm: np.ndarray, ts: np.ndarray, task: str) -> Section:
    y = s.targets
    if task == "expression":
        y = (y - tm) / ts
    return replace(s, features=((s.features - fm) / fs).astype(np.float32), targets=y.astype(np.float32))


# ---------------------------------------------------------------------------------------------- ridge
def _fit_ridge(model: HistModel, sections: Sequence[Section], n_components: int = 256) -> None:
    """PCA (on training spots) + ridge with the penalty chosen by generalised cross-validation, as one linear map."""
    import torch

    x = np.concatenate([s.features[s.in_tissue] for s in sections]).astype(np.float64)
    y = np.concatenate([s.targets[s.in_tissue] for s in sections]).astype(np.float64)
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(n_components, vt.shape[0])
    v = vt[:k].T  # (d, k)
    z = xc @ v
    u, s, wt = np.linalg.svd(z, full_matrices=False)
    uty = u.T @ yc
    n = len(x)
    best = (np.inf, 1.0)
    for alpha in np.logspace(-3, 6, 37):
        f = s**2 / (s**2 + alpha)
        resid = ((yc - u @ (f[:, None] * uty)) ** 2).sum()
        gcv = resid / max(n - f.sum(), 1.0) ** 2
        if gcv < best[0]:
            best = (gcv, alpha)
    alpha = best[1]
    coef_z = wt.T @ ((s / (s**2 + alpha))[:, None] * uty)  # (k, g)
    coef = v @ coef_z  # (d, g)
    bias = ym - xm @ coef
    with torch.no_grad():
        model.net.linear.weight.copy_(torch.from_numpy(coef.T.astype(np.float32)))
        model.net.linear.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    model.params.update({"ridge_alpha": float(alpha), "pca_components": int(k)})


# ---------------------------------------------------------------------------------------------- torch methods
def _fit_torch(
    model: HistModel,
    sections: Sequence[Section],
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    augment: bool,
    rng: np.random.Generator,
    device: torch.device,
    show_progress: bool,
) -> None:
    import torch

    net = model.net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    step = {"grid": _grid_steps, "spot": _spot_steps, "set": _set_steps, "graph": _graph_steps}[model.kind]
    ctx = _context(model, sections)
    bar = progress(range(epochs), enabled=show_progress, desc=f"training {model.method}", leave=False)
    for _ in bar:
        net.train()
        losses = []
        for loss in step(model, sections, ctx, batch_size=batch_size, augment=augment, rng=rng, device=device):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        sched.step()
        model.history.append(float(np.mean(losses)) if losses else float("nan"))
        if show_progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{model.history[-1]:.4f}")


def _loss(model: HistModel, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    from hist_sd import models

    if model.task == "tumor":
        return models.masked_bce_with_logits(pred, target, mask)
    loss = models.masked_mse(pred, target, mask)
    weight = float(model.params.get("corr_weight", 0.0))
    if weight:
        loss = loss + weight * _correlation_loss(pred, target, mask)
    return loss


def _correlation_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over channels of ``1 - Pearson r`` between ``pred`` and ``target`` at the masked positions."""
    if pred.ndim == 4:
        pred, target = pred.movedim(1, -1), target.movedim(1, -1)
    p, t = pred[mask], target[mask]
    p = p - p.mean(0)
    t = t - t.mean(0)
    r = (p * t).sum(0) / (p.norm(dim=0) * t.norm(dim=0) + 1e-6)
    return (1.0 - r).mean()


def _noisy(x: np.ndarray, model: HistModel, rng: np.random.Generator, augment: bool) -> np.ndarray:
    """``x`` plus Gaussian training noise of standard deviation ``model.params["input_noise"]``."""
    sd = float(model.params.get("input_noise", 0.0))
    if not augment or not sd:
        return x
    return (x + sd * rng.standard_normal(x.shape)).astype(np.float32)


def _ceil_to(n: int, m: int) -> int:
    return int(math.ceil(n / m) * m)


def _context(model: HistModel, sections: Sequence[Section]) -> dict[str, Any]:
    """Per-kind precomputation (common padded grid size, graphs)."""
    pad = int(model.grid.get("pad_multiple", 16))
    extent = max(max(int(s.rows.max()) + 1, int(s.cols.max()) + 1) for s in sections)
    ctx: dict[str, Any] = {"square": all(s.layout in ("st", "tiles") for s in sections)}
    if model.kind == "grid":
        ctx["size"] = _ceil_to(extent + 4, pad)
        crop = model.params.get("crop")
        if crop:
            ctx["crop"] = _ceil_to(int(crop), pad)
    if model.kind == "graph":
        ctx["edges"] = [section_graph(s) for s in sections]
    return ctx


def _augment_coords(
    s: Section, size: int, *, augment: bool, square: bool, rng: np.random.Generator, shift: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly flipped / rotated / shifted grid coordinates of a section inside a ``size`` x ``size`` canvas."""
    r, c = s.rows.copy(), s.cols.copy()
    if augment:
        if square and rng.random() < 0.5:
            r, c = c, r  # transpose (with the flips below this gives all 8 symmetries of the square grid)
        if rng.random() < 0.5:
            r = r.max() - r
        if rng.random() < 0.5:
            c = c.max() - c
    r = r - r.min()
    c = c - c.min()
    if augment and shift:
        r = r + rng.integers(0, max(size - int(r.max()), 1))
        c = c + rng.integers(0, max(size - int(c.max()), 1))
    if r.max() >= size or c.max() >= size:
        raise ValueError("A training section does not fit the training grid; this is a bug.")
    return r, c


def _grid_steps(model, sections, ctx, *, batch_size, augment, rng, device):
    import torch

    crop = ctx.get("crop")
    size = crop or ctx["size"]
    d = sections[0].features.shape[1]
    g = sections[0].targets.shape[1]
    if crop:  # random windows centred on in-tissue spots: many distinct samples from a few slides
        per = [max(1, math.ceil(2 * int(s.in_tissue.sum()) / crop**2)) for s in sections]
        samples = rng.permutation(np.repeat(np.arange(len(sections)), per))
    else:
        samples = rng.permutation(len(sections))
    for start in range(0, len(samples), batch_size):
        idx = samples[start : start + batch_size]
        b = len(idx)
        x = np.zeros((b, d, size, size), np.float32)
        y = np.zeros((b, g, size, size), np.float32)
        m = np.zeros((b, size, size), bool)
        for j, i in enumerate(idx):
            s = sections[i]
            if crop:
                r, c = _augment_coords(s, 10**6, augment=augment, square=ctx["square"], rng=rng, shift=False)
                centre = rng.choice(np.flatnonzero(s.in_tissue))
                r = r - r[centre] + crop // 2 + (rng.integers(-crop // 4, crop // 4 + 1) if augment else 0)
                c = c - c[centre] + crop // 2 + (rng.integers(-crop // 4, crop // 4 + 1) if augment else 0)
                keep = (r >= 0) & (r < crop) & (c >= 0) & (c < crop)
            else:
                r, c = _augment_coords(s, size, augment=augment, square=ctx["square"], rng=rng)
                keep = np.ones(s.n_obs, bool)
            x[j][:, r[keep], c[keep]] = _noisy(s.features[keep], model, rng, augment).T
            y[j][:, r[keep], c[keep]] = s.targets[keep].T
            tissue = keep & s.in_tissue
            m[j][r[tissue], c[tissue]] = True
        if not m.any():
            continue
        pred = model.net(torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last))
        yield _loss(model, pred, torch.from_numpy(y).to(device), torch.from_numpy(m).to(device))


def _spot_steps(model, sections, ctx, *, batch_size, augment, rng, device):
    import torch

    if "x" not in ctx:
        ctx["x"] = torch.from_numpy(np.concatenate([s.features[s.in_tissue] for s in sections]))
        ctx["y"] = torch.from_numpy(np.concatenate([s.targets[s.in_tissue] for s in sections]))
    x, y = ctx["x"], ctx["y"]
    order = torch.from_numpy(rng.permutation(len(x)))
    for start in range(0, len(order), SPOT_BATCH):
        idx = order[start : start + SPOT_BATCH]
        if len(idx) < 2:
            continue
        xb = torch.from_numpy(_noisy(x[idx].numpy(), model, rng, augment)).to(device)
        yb = y[idx].to(device)
        pred = model.net(xb)
        mask = torch.ones(len(idx), dtype=torch.bool, device=device)
        yield _loss(model, pred[:, :, None, None], yb[:, :, None, None], mask[:, None, None])


def _set_steps(model, sections, ctx, *, batch_size, augment, rng, device):
    import torch

    max_grid = int(model.net.hparams.get("max_grid", 128))
    order = rng.permutation(len(sections))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        n = max(sections[i].n_obs for i in idx)
        d, g = sections[0].features.shape[1], sections[0].targets.shape[1]
        x = np.zeros((len(idx), n, d), np.float32)
        y = np.zeros((len(idx), n, g), np.float32)
        pos = np.zeros((len(idx), n, 2), np.int64)
        pad = np.ones((len(idx), n), bool)
        m = np.zeros((len(idx), n), bool)
        for j, i in enumerate(idx):
            s = sections[i]
            r, c = _augment_coords(s, max_grid, augment=augment, square=ctx["square"], rng=rng)
            k = s.n_obs
            x[j, :k], y[j, :k], pos[j, :k, 0], pos[j, :k, 1] = _noisy(s.features, model, rng, augment), s.targets, r, c
            pad[j, :k] = False
            m[j, :k] = s.in_tissue
        pred = model.net(torch.from_numpy(x).to(device), torch.from_numpy(pos).to(device), torch.from_numpy(pad).to(device))
        yt = torch.from_numpy(y).to(device)
        yield _loss(model, pred.permute(0, 2, 1)[..., None], yt.permute(0, 2, 1)[..., None], torch.from_numpy(m).to(device)[..., None])


def _graph_steps(model, sections, ctx, *, batch_size, augment, rng, device):
    import torch

    order = rng.permutation(len(sections))
    for i in order:
        s = sections[i]
        pred = model.net(torch.from_numpy(_noisy(s.features, model, rng, augment)).to(device), ctx["edges"][i].to(device))
        m = torch.from_numpy(s.in_tissue).to(device)
        yt = torch.from_numpy(s.targets).to(device)
        yield _loss(model, pred.T[None, :, :, None], yt.T[None, :, :, None], m[None, :, None])


def section_graph(section: Section) -> torch.Tensor:
    """Neighbour graph of a section's spots: 8-neighbourhood on square grids, the 6 hexagonal neighbours on Visium."""
    from hist_sd import models

    if section.layout == "visium":
        return models.spot_graph(section.rows, section.cols, radius=2.1, row_scale=float(np.sqrt(3)))
    return models.spot_graph(section.rows, section.cols)


def _symmetries(*, square: bool) -> list[tuple[bool, list[int]]]:
    """Grid symmetries as (transpose first, dimensions to flip): 8 on square grids, the 4 flips otherwise."""
    flips = [[], [-2], [-1], [-2, -1]]
    return [(t, f) for t in ((False, True) if square else (False,)) for f in flips]


def forward_section(model: HistModel, section: Section, x: np.ndarray, *, device: torch.device) -> np.ndarray:
    """Network outputs for one section's standardised features ``x`` ``(n, d)``, as ``(n, n_outputs)``."""
    import torch

    net = model.net
    kind = model.kind
    if kind == "grid":
        pad = int(model.grid.get("pad_multiple", 16))
        h = _ceil_to(int(section.rows.max()) + 1, pad)
        w = _ceil_to(int(section.cols.max()) + 1, pad)
        grid = torch.from_numpy(section.grid(x, (h, w))[None]).to(device)
        if not model.params.get("tta", False):
            out = net(grid.contiguous(memory_format=torch.channels_last))
            return section.ungrid(out[0].float().cpu().numpy())
        total = None
        for transpose, flips in _symmetries(square=section.layout in ("st", "tiles")):
            g = grid.transpose(-1, -2) if transpose else grid
            g = g.flip(flips) if flips else g
            o = net(g.contiguous(memory_format=torch.channels_last))
            o = o.flip(flips) if flips else o
            o = o.transpose(-1, -2) if transpose else o
            total = o if total is None else total + o
        n = len(_symmetries(square=section.layout in ("st", "tiles")))
        return section.ungrid((total / n)[0].float().cpu().numpy())
    xt = torch.from_numpy(x).to(device)
    if kind == "spot":
        return torch.cat([net(xt[i : i + 4096]) for i in range(0, len(xt), 4096)]).float().cpu().numpy()
    if kind == "set":
        r = section.rows - section.rows.min()
        c = section.cols - section.cols.min()
        pos = torch.from_numpy(np.stack([r, c], 1).astype(np.int64))[None].to(device)
        return net(xt[None], pos, None)[0].float().cpu().numpy()
    if kind == "graph":
        return net(xt, section_graph(section).to(device)).float().cpu().numpy()
    raise ValueError(f"Unknown model kind {kind!r}.")
