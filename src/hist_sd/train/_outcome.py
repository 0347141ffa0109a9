"""Training engine of HiST's application module: outcome networks on gene maps, the Cox head, and the baselines.

Everything here sees only the training slides: the per-gene standardisation, the clinical encoding, the class
weights, the number of epochs (fixed in advance) and the high/low risk threshold.
"""

from __future__ import annotations

import logging
import time as _time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hist_sd.model._outcome import OutcomeModel, encode_clinical, pad_maps

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("hist_sd")

__all__ = ["OUTCOME_DEFAULTS", "clinical_spec", "cox_baseline", "fit_cox_head", "fit_outcome", "gene_stats",
           "logistic_baseline"]

#: Training settings of :func:`fit_outcome` (override any with keyword arguments).
OUTCOME_DEFAULTS: dict[str, Any] = {"epochs": 20, "lr": 1e-3, "weight_decay": 0.05, "batch_size": 16,
                                    "ties": "efron"}
#: A numeric clinical column with more distinct values than this is z-scored; otherwise it is one-hot encoded.
MAX_LEVELS = 10


def clinical_spec(obs: pd.DataFrame, columns: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The encoding of each clinical column, learned on the training slides (see ``encode_clinical``)."""
    spec: dict[str, dict[str, Any]] = {}
    for col in columns:
        if col not in obs.columns:
            raise KeyError(f"`clinical`: {col!r} is not a column of the clinical table; it has {list(obs.columns)}.")
        v = obs[col]
        numeric = pd.api.types.is_numeric_dtype(v) and not pd.api.types.is_bool_dtype(v)
        if numeric and v.nunique(dropna=True) > MAX_LEVELS:
            num = pd.to_numeric(v, errors="coerce")
            sd = float(num.std(ddof=0))
            spec[col] = {"kind": "numeric", "mean": float(num.mean()), "std": sd if sd > 0 else 1.0}
        else:
            levels = sorted({str(a) for a in v.dropna()})
            if not levels:
                raise ValueError(f"`clinical`: column {col!r} has no value in the training slides.")
            spec[col] = {"kind": "onehot", "levels": levels}
    return spec


def gene_stats(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation over the tiles (masked cells) of the training maps."""
    g = maps[0].shape[0]
    s = np.zeros(g)
    s2 = np.zeros(g)
    n = 0
    for a, m in zip(maps, masks, strict=True):
        v = a[:, m].astype(np.float64)
        s += v.sum(axis=1)
        s2 += (v * v).sum(axis=1)
        n += v.shape[1]
    mean = s / n
    sd = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    return mean.astype(np.float32), np.where(sd > 1e-8, sd, 1.0).astype(np.float32)


def _settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    bad = sorted(set(settings) - set(OUTCOME_DEFAULTS))
    if bad:
        raise ValueError(f"Unknown training setting(s) {bad}; valid: {sorted(OUTCOME_DEFAULTS)}.")
    opts = {**OUTCOME_DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    for k in ("epochs", "batch_size"):
        if isinstance(opts[k], bool) or not isinstance(opts[k], int | np.integer) or opts[k] < 1:
            raise ValueError(f"`{k}` must be an integer >= 1, got {opts[k]!r}.")
    return opts


def _targets(task: str, time_: np.ndarray | None, event: np.ndarray | None, labels: np.ndarray | None
             ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Checked targets of the training slides and the response classes."""
    from hist_sd._core._survival import check_survival

    if task == "survival":
        t, e = check_survival(time_, event)
        if not e.any():
            raise ValueError("The training slides have no observed event (all censored): a Cox model cannot be "
                             "fit; check the event / censorship column.")
        return {"time": t, "event": e}, []
    if task != "response":
        raise ValueError(f"`task` must be 'survival' or 'response', got {task!r}.")
    lab = pd.Series(labels, dtype=object)
    if lab.isna().any():
        raise ValueError(f"The response has {int(lab.isna().sum())} missing value(s) among the training slides.")
    lab = lab.astype(str)
    classes = sorted(lab.unique())
    if len(classes) < 2:
        raise ValueError(f"The response column has a single class ({classes[0]!r}) among the training slides; a "
                         "classifier needs at least two.")
    return {"y": np.searchsorted(np.asarray(classes), lab.to_numpy()).astype(np.int64)}, classes


def fit_outcome(
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    obs: pd.DataFrame,
    *,
    genes: Sequence[str],
    task: str = "survival",
    time: np.ndarray | None = None,
    event: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    clinical: Sequence[str] = (),
    shape: tuple[int, int] | None = None,
    seed: int | None = 0,
    device: str | torch.device = "auto",
    model_kwargs: Mapping[str, Any] | None = None,
    progress: bool = False,
    **settings: Any,
) -> OutcomeModel:
    """Train :class:`~hist_sd.nn.OutcomeConvNeXt` on the training slides' maps (Cox loss or weighted cross-entropy).

    Survival batches without an event are skipped (their Cox partial likelihood is undefined); the risk sets of a
    batch are its slides sorted by time (:func:`~hist_sd.nn.cox_ph_loss`). Response classes are weighted by
    ``n / (K * n_k)``. The number of epochs is fixed in advance; the model of the last epoch is returned.
    """
    import torch

    from hist_sd._core._runtime import get_device, set_seed
    from hist_sd._core._runtime import progress as progress_bar
    from hist_sd.nn import OutcomeConvNeXt, cox_ph_loss

    opts = _settings(settings)
    tgt, classes = _targets(task, time, event, labels)
    spec = clinical_spec(obs, clinical)
    clin = encode_clinical(obs, spec)
    mean, std = gene_stats(maps, masks)
    dev = get_device(device)
    if seed is not None:
        set_seed(int(seed))
    kw = dict(model_kwargs or {})
    net = OutcomeConvNeXt(len(genes), n_clinical=clin.shape[1], task=task, n_classes=max(len(classes), 2), **kw).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=float(opts["lr"]), weight_decay=float(opts["weight_decay"]))
    weight = None
    if task == "response":
        counts = np.bincount(tgt["y"], minlength=len(classes))
        weight = torch.tensor(len(tgt["y"]) / (len(classes) * counts), dtype=torch.float32, device=dev)
    rng = np.random.default_rng(seed)
    history: list[float] = []
    t0 = _time.perf_counter()
    n = len(maps)
    bs = int(opts["batch_size"])
    for _ in progress_bar(range(int(opts["epochs"])), enabled=progress, desc="epochs"):
        net.train()
        order = rng.permutation(n)
        losses = []
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            if task == "survival" and (not tgt["event"][idx].any() or len(idx) < 2):
                continue
            x, m = pad_maps([maps[j] for j in idx], [masks[j] for j in idx], mean, std)
            out = net(torch.from_numpy(x).to(dev), torch.from_numpy(m).to(dev), torch.from_numpy(clin[idx]).to(dev))
            logits = out["logits"]
            if task == "survival":
                loss = cox_ph_loss(logits[:, 0], torch.from_numpy(tgt["time"][idx]).to(dev),
                                   torch.from_numpy(tgt["event"][idx]).to(dev), ties=opts["ties"])
            else:
                loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(tgt["y"][idx]).to(dev), weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        history.append(float(np.mean(losses)) if losses else float("nan"))
    model = OutcomeModel(net=net.eval(), task=task, genes=list(genes), gene_mean=mean, gene_std=std, clinical=spec,
                         classes=classes, shape=shape, history=history,
                         params={**opts, "seed": seed, "n_train": n,
                                 "train_seconds": round(_time.perf_counter() - t0, 3)})
    if task == "survival":
        model.threshold = float(np.median(model.predict_output(maps, masks, clin, device=dev)[:, 0]))
    net.to("cpu")
    return model


def fit_cox_head(x: np.ndarray, time_: np.ndarray, event: np.ndarray, *, penalizer: float = 0.1,
                 hidden: int = 0, epochs: int = 200, seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray]:
    """Fit an :class:`~hist_sd.nn.OutcomeHead` (survival) on patient vectors with the Cox partial likelihood.

    Inputs are standardised with the training mean and standard deviation (``ddof=1``, as lifelines does).
    The objective is lifelines' ``CoxPHFitter(penalizer=p)``: ``-loglik / n + p / 2 * ||w||^2`` (Efron ties) on the
    head's weights, so with ``hidden=0`` (a linear head) it has the same minimum; it is minimised full-batch with
    L-BFGS (``hidden=0``) or AdamW for ``epochs`` steps (``hidden > 0``).

    Returns
    -------
    The head (eval mode), and the mean and standard deviation used to standardise ``x``.
    """
    import torch

    from hist_sd._core._survival import check_survival
    from hist_sd.nn import OutcomeHead, cox_ph_loss

    t, e = check_survival(time_, event, n=len(x))
    if not e.any():
        raise ValueError("No observed event among the training patients: a Cox model cannot be fit.")
    mu = x.mean(axis=0)
    sd = x.std(axis=0, ddof=1)
    sd = np.where(sd > 1e-12, sd, 1.0)
    z = torch.from_numpy((x - mu) / sd).double()
    tt, ee = torch.from_numpy(t), torch.from_numpy(e)
    torch.manual_seed(seed)
    head = OutcomeHead(x.shape[1], hidden=hidden, dropout=0.0).double()
    if hidden == 0:
        torch.nn.init.zeros_(head.layers[0].weight)
    weights = [p for name, p in head.named_parameters() if name.endswith("weight")]
    n = len(t)

    def objective() -> torch.Tensor:
        loss = cox_ph_loss(head(z)["logits"][:, 0], tt, ee, reduction="sum") / n
        return loss + 0.5 * penalizer * sum((w * w).sum() for w in weights)

    if hidden == 0:
        opt = torch.optim.LBFGS(head.parameters(), line_search_fn="strong_wolfe", max_iter=500,
                                tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        opt.step(closure)
    else:
        adam = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=0.0)
        for _ in range(epochs):
            adam.zero_grad()
            loss = objective()
            loss.backward()
            adam.step()
    return head.eval(), mu, sd


def _reduce(x_train: np.ndarray, x_test: np.ndarray, n_components: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Standardise with the training statistics and, above ``n_components`` dimensions, project on its PCA."""
    mu, sd = x_train.mean(axis=0), x_train.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    if n_components is not None and a.shape[1] > n_components:
        _, s, vt = np.linalg.svd(a, full_matrices=False)
        k = int(min(n_components, a.shape[0] - 1, (s > 1e-8 * max(s[0], 1e-300)).sum()))
        proj = vt[:k].T / (s[:k] / np.sqrt(max(a.shape[0] - 1, 1)))  # whitened components (none when constant)
        a, b = a @ proj, b @ proj
    return a, b


def cox_baseline(x_train: np.ndarray, time_: np.ndarray, event: np.ndarray, x_test: np.ndarray, *,
                 penalizer: float = 0.1, n_components: int | None = 16) -> tuple[np.ndarray, np.ndarray]:
    """Penalised Cox (lifelines, Efron ties) on standardised (PCA-reduced) training vectors.

    Returns the log-hazards of the training and of the test vectors.
    """
    from lifelines import CoxPHFitter

    a, b = _reduce(np.asarray(x_train, np.float64), np.asarray(x_test, np.float64), n_components)
    keep = a.std(axis=0) > 1e-12
    a, b = a[:, keep], b[:, keep]
    if a.shape[1] == 0:
        return np.zeros(len(a)), np.zeros(len(b))
    cols = [f"x{i}" for i in range(a.shape[1])]
    df = pd.DataFrame(a, columns=cols)
    df["time"], df["event"] = np.asarray(time_, float), np.asarray(event, int)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cph = CoxPHFitter(penalizer=penalizer).fit(df, duration_col="time", event_col="event")
    for w in caught:
        logger.info("lifelines: %s", w.message)
    beta = cph.params_[cols].to_numpy()
    return a @ beta, b @ beta


def logistic_baseline(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *,
                      n_components: int | None = 16, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Class-balanced L2 logistic regression on standardised (PCA-reduced) vectors.

    Returns the test class probabilities and the classes (column order).
    """
    from sklearn.linear_model import LogisticRegression

    a, b = _reduce(np.asarray(x_train, np.float64), np.asarray(x_test, np.float64), n_components)
    clf = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed).fit(a, y_train)
    return clf.predict_proba(b), [str(c) for c in clf.classes_]
