"""Fitting whole-slide survival models on the patients of one training fold.

:func:`fit_survival` sees only the training patients' bags, times, events and genomics: everything it learns (time
bins, the genes of each family, feature and genomic standardisation, PCA, weights, the risk threshold) comes from
them. Nothing here picks an epoch or a setting on held-out patients: the number of epochs is fixed in advance.
"""

from __future__ import annotations

import logging
import time as _time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hist_sd._core._runtime import get_device, progress, set_seed
from hist_sd._core._survival import check_survival, discretize, time_bins
from hist_sd.model._spec import SURVIVAL, MethodSpec, get_method
from hist_sd.model._survival import SurvivalModel, network_logits, pad_bags, patient_means
from hist_sd.train._fitting import mean_std, whitened_pca

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("hist_sd")

__all__ = ["SURVIVAL_DEFAULTS", "fit_survival", "select_family_genes", "survival_settings"]

#: Training settings shared by every gradient-trained survival method (the G-HANet protocol): Adam, learning rate,
#: weight decay, patients per step (the reference accumulates 32 single-patient gradients), weight of the genomic
#: reconstruction loss, number of time bins, p-value of the per-family t-test, the Cox fits' L2 penalty, and the
#: precision of the training forward passes (``"auto"``: bfloat16 autocast where the device multiplies bf16
#: natively, a CUDA GPU or a CPU with AMX, else float32; ``"float32"``; ``"bfloat16"``).
SURVIVAL_DEFAULTS: dict[str, Any] = {
    "lr": 2e-4, "weight_decay": 1e-5, "batch_size": 32, "recon_weight": 0.3, "n_bins": 4, "gene_p": 0.05,
    "cox_penalizer": 0.1, "precision": "auto",
}  # fmt: skip
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")


def select_family_genes(
    genomics: pd.DataFrame, families: Mapping[str, Sequence[str]], labels: np.ndarray, event: np.ndarray,
    *, p: float = 0.05,
) -> dict[str, list[str]]:
    """Genomic columns of each family that separate early events from late/long survivors (Welch t-test).

    As G-HANet: patients with an event in the first two time bins are "high risk", patients in the later bins
    (event or not) "low risk"; censored patients of the first two bins are left out. A column is kept when its
    two-sided Welch p-value is below ``p``. Run on the training fold only.
    """
    from scipy.stats import ttest_ind

    high = event & (labels < 2)
    low = labels >= 2
    if high.sum() < 2 or low.sum() < 2:
        raise ValueError(
            f"Gene selection needs >= 2 early events and >= 2 later patients in the training fold; got "
            f"{int(high.sum())} and {int(low.sum())}."
        )
    out: dict[str, list[str]] = {}
    for name, cols in families.items():
        cols = list(cols)
        if not cols:
            out[name] = []
            continue
        x = genomics[cols].to_numpy(np.float64)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant columns give NaN p-values: not selected
            pv = ttest_ind(x[high], x[low], axis=0, equal_var=False).pvalue
        out[name] = [c for c, v in zip(cols, np.atleast_1d(pv), strict=True) if np.isfinite(v) and v < p]
    return out


def survival_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`SURVIVAL_DEFAULTS` updated with ``settings``; a clear error for a setting that does not exist."""
    unknown = set(settings) - set(SURVIVAL_DEFAULTS)
    if unknown:
        raise TypeError(f"Unknown training settings {sorted(unknown)}; known: {sorted(SURVIVAL_DEFAULTS)}.")
    return {**SURVIVAL_DEFAULTS, **settings}


def _check_method(method: str) -> MethodSpec:
    spec = get_method(method)
    if not spec.patient_level:
        from hist_sd.model import METHODS

        ok = [n for n, s in METHODS.items() if s.patient_level]
        raise ValueError(f"`method`={method!r} is not a survival method; choose one of {ok}.")
    return spec


def fit_survival(
    bags: Sequence[np.ndarray],
    time: np.ndarray,
    event: np.ndarray,
    *,
    method: str = "ghanet",
    genomics: pd.DataFrame | None = None,
    families: Mapping[str, Sequence[str]] | None = None,
    epochs: int | None = None,
    seed: int | None = 0,
    device: str | torch.device = "auto",
    show_progress: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    **settings: Any,
) -> SurvivalModel:
    """Fit ``method`` on training patients: their bags, survival and (for genomics-aware methods) genomics.

    ``settings`` override :data:`SURVIVAL_DEFAULTS`. ``genomics`` is a patients x columns frame in the order of
    ``bags``; ``families`` maps a family name to its columns. Returns the fitted :class:`SurvivalModel` with
    ``threshold`` = the median risk of the training patients.
    """
    spec = _check_method(method)
    opts = survival_settings(settings)
    time, event = check_survival(time, event, n=len(bags))
    rng = set_seed(seed)
    t0 = _time.perf_counter()
    loss = "cox" if spec.fit == "cox" else "nll"
    cuts = time_bins(time, event, int(opts["n_bins"])) if loss == "nll" else np.zeros(0)
    model = _init_model(spec, bags, time, event, genomics, families, cuts, opts, model_kwargs or {})
    epochs = spec.epochs if epochs is None else int(epochs)
    model.params.update({"method": method, "epochs": epochs, "seed": seed, "n_train": len(bags),
                         "n_events": int(event.sum()), **opts})
    if spec.fit == "cox":
        _fit_cox(model, bags, time, event, genomics, penalizer=float(opts["cox_penalizer"]))
    else:
        dev = get_device(device)
        _fit_gradient(model, bags, time, event, genomics, cuts, epochs=epochs, opts=opts, rng=rng, device=dev,
                      show_progress=show_progress)
    train_risk = model.predict_risk(bags, genomics=model.genomic_input(genomics))
    model.threshold = float(np.median(train_risk))
    model.params["train_seconds"] = _time.perf_counter() - t0
    logger.info("trained %s (survival) on %d patients (%d events) in %.1f s", method, len(bags), int(event.sum()),
                model.params["train_seconds"])
    return model


def _init_model(
    spec: MethodSpec, bags: Sequence[np.ndarray], time: np.ndarray, event: np.ndarray,
    genomics: pd.DataFrame | None, families: Mapping[str, Sequence[str]] | None, cuts: np.ndarray,
    opts: Mapping[str, Any], model_kwargs: Mapping[str, Any],
) -> SurvivalModel:
    """Everything learned before the weights: gene selection, standardisation, PCA; an untrained network."""
    dims = {b.shape[1] for b in bags}
    if len(dims) != 1 or any(len(b) == 0 for b in bags):
        raise ValueError(f"Every training bag needs >= 1 instance of one feature dimension; got dimensions {sorted(dims)}.")
    feature_dim = dims.pop()
    selected: dict[str, list[str]] = {}
    if spec.genomics is not None:
        if genomics is None or not families:
            raise ValueError(f"method={spec.name!r} needs the training patients' `genomics` and their gene `families`.")
        labels = discretize(time, cuts if len(cuts) else time_bins(time, event, int(opts["n_bins"])))
        selected = select_family_genes(genomics, families, labels, event, p=float(opts["gene_p"]))
    columns = list(dict.fromkeys(c for cols in selected.values() for c in cols))
    if spec.genomics and not columns:
        raise ValueError("No genomic column passed the training fold's t-test; nothing to learn from the genome.")
    gm, gs = mean_std(genomics[columns].to_numpy()) if columns else (None, None)
    n_out = 1 if spec.fit == "cox" else len(cuts) + 1
    kw = dict(model_kwargs)
    if spec.genomics == "input":
        x, inputs = genomics[columns].to_numpy(np.float32), "genomics"
    else:
        x, inputs = (patient_means(bags) if spec.input == "patient" else np.concatenate(bags)), "features"
    fm, fs = mean_std(x)
    projection = whitened_pca((x - fm) / fs, spec.pca) if spec.pca and spec.input == "patient" else None
    in_dim = x.shape[1] if projection is None else projection.shape[1]
    if spec.genomics == "train":
        kw.setdefault("omic_sizes", [len(selected[f]) for f in selected])
    net = spec.network(in_dim, n_out, **kw)
    return SurvivalModel(
        net=net, method=spec.name, loss="cox" if spec.fit == "cox" else "nll", feature_dim=feature_dim,
        feature_mean=fm, feature_std=fs, inputs=inputs, projection=projection, cuts=cuts, families=selected,
        genomic_columns=columns, genomic_mean=gm, genomic_std=gs,
        params={"task": SURVIVAL, "model_kwargs": {k: v for k, v in kw.items() if k != "omic_sizes"}},
    )


def _fit_cox(
    model: SurvivalModel, bags: Sequence[np.ndarray], time: np.ndarray, event: np.ndarray,
    genomics: pd.DataFrame | None, *, penalizer: float,
) -> None:
    """Penalised Cox (lifelines' CoxPHFitter, Efron ties) on the standardised, projected patient vectors."""
    import torch
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceWarning

    raw = model.genomic_input(genomics) if model.inputs == "genomics" else patient_means(bags)
    z = model.patient_input(raw)
    df = pd.DataFrame(z, columns=[f"x{i}" for i in range(z.shape[1])])
    df["time"], df["event"] = time, event.astype(int)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        cph = CoxPHFitter(penalizer=penalizer).fit(df, duration_col="time", event_col="event")
    for w in caught:
        logger.info("lifelines: %s", w.message)
    beta = cph.params_.to_numpy(np.float32)
    with torch.no_grad():
        model.net.linear.weight.copy_(torch.from_numpy(beta[None, :]))
        model.net.linear.bias.zero_()
    model.params["cox_concordance_train"] = float(cph.concordance_index_)


def _fit_gradient(
    model: SurvivalModel, bags: Sequence[np.ndarray], time: np.ndarray, event: np.ndarray,
    genomics: pd.DataFrame | None, cuts: np.ndarray, *, epochs: int, opts: Mapping[str, Any],
    rng: np.random.Generator, device: torch.device, show_progress: bool,
) -> None:
    """Adam over ``epochs`` fixed in advance; loss = discrete-time NLL (+ ``recon_weight`` x reconstruction)."""
    import contextlib

    import torch

    from hist_sd._core._runtime import fast_bf16
    from hist_sd.nn._survival import nll_survival_loss, reconstruction_loss

    net = model.net.to(device)
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    opt = torch.optim.Adam(net.parameters(), lr=float(opts["lr"]), weight_decay=float(opts["weight_decay"]), **fused)
    if opts["precision"] not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}, got {opts['precision']!r}.")
    bf16 = opts["precision"] == "bfloat16" or (opts["precision"] == "auto" and fast_bf16(device))
    model.params["precision_used"] = "bfloat16" if bf16 else "float32"
    labels = torch.from_numpy(discretize(time, cuts)).to(device)
    censored = torch.from_numpy((~event).astype(np.float32)).to(device)
    targets = _family_targets(model, genomics, device)
    x_patient = None
    if model.inputs == "genomics":
        x_patient = torch.from_numpy(model.patient_input(model.genomic_input(genomics))).to(device)
    bs, w = int(opts["batch_size"]), float(opts["recon_weight"])
    bar = progress(range(epochs), enabled=show_progress, desc=f"training {model.method}", leave=False)
    for _ in bar:
        net.train()
        losses = []
        order = rng.permutation(len(bags))
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            inputs = (x_patient[idx],) if x_patient is not None else \
                pad_bags([bags[j] for j in idx], model.feature_mean, model.feature_std, device)
            with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                out = net(*inputs)
            loss = nll_survival_loss(network_logits(out).float(), labels[idx], censored[idx])
            if targets and isinstance(out, dict) and out.get("genomics"):
                loss = loss + w * reconstruction_loss([g.float() for g in out["genomics"]], [t[idx] for t in targets])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        model.history.append(float(np.mean(losses)))
        if show_progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{model.history[-1]:.4f}")
    net.eval()


def _family_targets(model: SurvivalModel, genomics: pd.DataFrame | None, device: torch.device) -> list[torch.Tensor]:
    """Standardised genomic profile of each family (the reconstruction targets), one tensor per family."""
    import torch

    if model.spec.genomics != "train" or genomics is None:
        return []
    pos = {c: i for i, c in enumerate(model.genomic_columns)}
    z = (genomics[model.genomic_columns].to_numpy(np.float32) - model.genomic_mean) / model.genomic_std
    return [torch.from_numpy(z[:, [pos[c] for c in cols]].astype(np.float32)).to(device) for cols in model.families.values()]
