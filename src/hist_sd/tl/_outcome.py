"""HiST's application module: outcome models (survival, therapy response) on predicted expression maps.

:func:`outcome_maps` turns the predicted tables of many slides into per-slide gene maps (genes x H x W) with masks
and joins a clinical table; :func:`train_outcome` fits a ConvNeXt-V2 (:class:`~hist_sd.nn.OutcomeConvNeXt`) with a
Cox loss or a class-weighted cross-entropy; :func:`predict_outcome` scores slides and patients;
:func:`cross_validate_outcome` runs 5 patient-grouped, stratified folds with the baselines on the same folds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hist_sd import _constants as C
from hist_sd._docs import doc_params
from hist_sd.model._outcome import OutcomeModel

if TYPE_CHECKING:
    import torch
    from anndata import AnnData
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

__all__ = ["OutcomeCV", "OutcomeMaps", "cross_validate_outcome", "outcome_folds", "outcome_maps",
           "predict_outcome", "train_outcome"]

#: HiST's fixed map of a TCGA slide (rows, columns): ``hs.pp.tile(sdata, shape=(80, 64))``.
HIST_SHAPE: tuple[int, int] = (80, 64)
SLIDE_KEY, PATIENT_KEY = "slide_id", "case_id"
TIME_KEY, EVENT_KEY, CENSORSHIP_KEY = "survival_months", "event", "censorship"


@dataclass
class OutcomeMaps:
    """Predicted gene maps of many slides, their masks and one clinical row per slide.

    Attributes
    ----------
    names
        Slide ids, in order.
    genes
        The map channels.
    maps
        One float32 ``(G, H, W)`` map per slide (zero outside its mask).
    masks
        One bool ``(H, W)`` mask per slide: the cells holding an in-tissue tile.
    obs
        One row per slide (index = slide ids): ``case_id`` (the patient) and the clinical columns.
    features
        Mean image feature of each slide's tiles ``(n, D)`` (the image-feature baseline), or ``None``.
    shape
        The fixed map shape, or ``None`` when each slide keeps its own tile grid (padded per batch).
    """

    names: list[str]
    genes: list[str]
    maps: list[np.ndarray]
    masks: list[np.ndarray]
    obs: pd.DataFrame
    features: np.ndarray | None = None
    shape: tuple[int, int] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        n_pat = self.obs[PATIENT_KEY].nunique() if PATIENT_KEY in self.obs else len(self)
        feats = "" if self.features is None else f", image features {self.features.shape[1]}-d"
        return (f"OutcomeMaps: {len(self)} slides of {n_pat} patients, {len(self.genes)} genes, "
                f"shape {self.shape or 'per slide'}{feats}\n    obs: {list(self.obs.columns)}")

    def subset(self, slides: Sequence[str]) -> OutcomeMaps:
        """The maps of ``slides`` (in that order)."""
        pos = pd.Index(self.names).get_indexer([str(s) for s in slides])
        if (pos < 0).any():
            raise KeyError(f"`slides`: not in the maps: {[s for s, p in zip(slides, pos, strict=True) if p < 0][:5]}.")
        return OutcomeMaps([self.names[i] for i in pos], list(self.genes), [self.maps[i] for i in pos],
                           [self.masks[i] for i in pos], self.obs.iloc[pos].copy(),
                           None if self.features is None else self.features[pos], self.shape, dict(self.attrs))

    def pseudo_bulk(self) -> np.ndarray:
        """Mean predicted expression over each slide's tiles ``(n, G)`` (the pseudo-bulk baseline)."""
        return np.stack([a[:, m].mean(axis=1) for a, m in zip(self.maps, self.masks, strict=True)]).astype(np.float32)


def _slide_values(data: Any, key: str, table_key: str | None) -> tuple[AnnData, np.ndarray, list[str]]:
    """The tile table of a slide, its predicted values ``(n, G)`` and the genes."""
    from hist_sd._core._data import resolve

    _, adata = resolve(data, table_key)
    if key in adata.obsm:
        genes = adata.uns.get(key, {}).get("genes")
        vals = np.asarray(adata.obsm[key], np.float32)
        if genes is None:
            genes = [f"{key}_{i}" for i in range(vals.shape[1])]
        return adata, vals, [str(g) for g in genes]
    raise KeyError(f"`key`={key!r}: the table has no predictions there (obsm has {list(adata.obsm)}); run "
                   f"`hs.tl.predict(sdata, model, key_added={key!r})` (or `hs.tl.predict_slides`) first.")


def _slide_map(adata: AnnData, vals: np.ndarray, shape: tuple[int, int] | None, name: str
               ) -> tuple[np.ndarray, np.ndarray]:
    from hist_sd._core._expr import in_tissue_mask
    from hist_sd._core._grid import assign_grid, scatter

    keep = in_tissue_mask(adata)
    if not keep.any():
        raise ValueError(f"Slide {name!r} has no in-tissue tile.")
    if shape is None:
        rows, cols, grid_shape, _, _ = assign_grid(adata, pad_multiple=1)
    else:
        for k in ("array_row", "array_col"):
            if k not in adata.obs:
                raise KeyError(f"Slide {name!r}: obs[{k!r}] is missing; tile the slide with `hs.pp.tile`.")
        rows, cols = (adata.obs[k].to_numpy(np.int64) for k in ("array_row", "array_col"))
        if rows.min() < 0 or cols.min() < 0 or rows.max() >= shape[0] or cols.max() >= shape[1]:
            raise ValueError(f"Slide {name!r}: tiles fall outside the fixed {shape[0]} x {shape[1]} map; tile it "
                             f"with `hs.pp.tile(sdata, shape={tuple(shape)})`, or pass `shape=None`.")
        grid_shape = tuple(shape)
    rows, cols = rows[keep], cols[keep]
    grid = scatter(vals[keep], rows, cols, grid_shape)
    mask = np.zeros(grid_shape, bool)
    mask[rows, cols] = True
    return grid, mask


def _join_clinical(names: list[str], clinical: pd.DataFrame, slide_key: str, patient_key: str) -> pd.DataFrame:
    """One clinical row per slide (index = slide ids), with ``case_id``; clear errors when they do not match."""
    if not isinstance(clinical, pd.DataFrame):
        raise TypeError(f"`clinical` must be a DataFrame (one row per slide), got {type(clinical).__name__}.")
    df = clinical.copy()
    if slide_key in df.columns:
        df.index = df[slide_key].astype(str)
    elif patient_key in df.columns and slide_key not in df.columns and df.index.name != slide_key:
        df.index = df[patient_key].astype(str)  # one slide per patient, named by the patient
    df.index = df.index.astype(str)
    if df.index.duplicated().any():
        raise ValueError(f"`clinical`: slide id(s) listed more than once: {list(df.index[df.index.duplicated()][:5])}.")
    missing = [n for n in names if n not in df.index]
    if missing:
        raise ValueError(
            f"`clinical` does not match the slides: {len(missing)} of {len(names)} slide(s) have no row "
            f"(e.g. {missing[:5]}; the table's ids look like {list(df.index[:3])}). Give the slide ids in a "
            f"{slide_key!r} column (or the patient ids in {patient_key!r} for one slide per patient)."
        )
    extra = df.index.difference(pd.Index(names))
    if len(extra):
        logger.info("clinical: %d row(s) without a slide are ignored (e.g. %s)", len(extra), list(extra[:3]))
    out = df.loc[names].drop(columns=[slide_key], errors="ignore")
    out.index.name = SLIDE_KEY
    if patient_key not in out.columns:
        out[patient_key] = out.index
    out[PATIENT_KEY] = out[patient_key].astype(str)
    return out


@doc_params
def outcome_maps(
    sdatas: Mapping[str, SpatialData | AnnData],
    clinical: pd.DataFrame | None = None,
    *,
    key: str = C.PRED,
    shape: tuple[int, int] | None = HIST_SHAPE,
    table_key: str | None = None,
    features_key: str | None = C.FEATURES,
    slide_key: str = SLIDE_KEY,
    patient_key: str = PATIENT_KEY,
) -> OutcomeMaps:
    """Per-slide gene maps (genes x H x W) and masks from the predicted tables of many slides.

    Parameters
    ----------
    sdatas
        Slide id -> a SpatialData or AnnData whose tile table has predictions in ``obsm[key]``
        (:func:`hist_sd.tl.predict` / :func:`hist_sd.tl.predict_slides`). Every slide must predict the same genes.
    clinical
        One row per slide: slide ids in a ``slide_key`` column (or the index), the patient in ``patient_key``
        (default: each slide is its own patient), outcomes (``survival_months`` + ``event`` or ``censorship``;
        or a response column) and clinical covariates. Every slide needs a row.
    key
        ``obsm`` key of the predictions (gene names in ``uns[key]["genes"]``).
    shape
        ``(80, 64)``: HiST's fixed map; tiles sit at their ``obs["array_row"]``/``obs["array_col"]``
        (``hs.pp.tile(sdata, shape=(80, 64))``). ``None``: each slide's own tile grid (:func:`hist_sd.pp.grid`'s
        layout), padded per batch at training and prediction time.
    %(table_key)s
    features_key
        ``obsm`` key of the tiles' image features, averaged per slide for the image-feature baseline (skipped when
        a slide lacks it); ``None`` to skip.
    slide_key, patient_key
        Column names of the slide and patient ids in ``clinical``.

    Returns
    -------
    An :class:`OutcomeMaps`.
    """
    if not isinstance(sdatas, Mapping) or not sdatas:
        raise ValueError("`sdatas` must be a non-empty mapping of slide id -> SpatialData / AnnData.")
    if shape is not None and (len(shape) != 2 or min(int(s) for s in shape) < 1):
        raise ValueError(f"`shape` must be (rows, cols) of positive integers or None, got {shape!r}.")
    names: list[str] = []
    maps, masks, feats, genes = [], [], [], None
    for name, data in sdatas.items():
        adata, vals, g = _slide_values(data, key, table_key)
        if genes is None:
            genes = g
        elif g != genes:
            raise ValueError(f"Slide {name!r} predicts other genes than the first slide ({len(g)} vs {len(genes)}); "
                             "predict every slide with the same model.")
        grid, mask = _slide_map(adata, vals, None if shape is None else (int(shape[0]), int(shape[1])), str(name))
        names.append(str(name))
        maps.append(grid)
        masks.append(mask)
        has = features_key is not None and features_key in adata.obsm
        feats.append(np.asarray(adata.obsm[features_key], np.float64).mean(axis=0) if has else None)
    obs = (pd.DataFrame({PATIENT_KEY: names}, index=pd.Index(names, name=SLIDE_KEY)) if clinical is None
           else _join_clinical(names, clinical, slide_key, patient_key))
    ok = all(f is not None for f in feats) and len({np.shape(f) for f in feats}) == 1
    features = np.stack(feats).astype(np.float32) if ok else None
    out = OutcomeMaps(names, list(genes or []), maps, masks, obs, features,
                      None if shape is None else (int(shape[0]), int(shape[1])))
    logger.info("%r", out)
    return out


# ----------------------------------------------------------------------------------------------- outcomes
def _check_maps(maps: Any) -> OutcomeMaps:
    if not isinstance(maps, OutcomeMaps):
        raise TypeError(f"`maps` must be an OutcomeMaps (hs.tl.outcome_maps), got {type(maps).__name__}.")
    return maps


def survival_of(obs: pd.DataFrame, time_key: str = TIME_KEY, event_key: str = EVENT_KEY) -> tuple[np.ndarray, np.ndarray]:
    """Times and events of the slides (``event_key``, else ``1 - censorship``), checked."""
    from hist_sd._core._survival import check_survival

    if time_key not in obs.columns:
        raise KeyError(f"`time_key`={time_key!r} is not a column of the clinical table; it has {list(obs.columns)}.")
    if event_key in obs.columns:
        event = obs[event_key].to_numpy()
    elif CENSORSHIP_KEY in obs.columns:
        event = 1 - pd.to_numeric(obs[CENSORSHIP_KEY], errors="coerce").to_numpy()
    else:
        raise KeyError(f"`event_key`={event_key!r} (or {CENSORSHIP_KEY!r}) is not a column of the clinical table; "
                       f"it has {list(obs.columns)}.")
    t, e = check_survival(obs[time_key].to_numpy(), event)
    if not e.any():
        raise ValueError(f"The cohort has no observed event ({event_key!r} is 0 / censored for all {len(e)} slides): "
                         "survival cannot be modelled or scored.")
    return t, e


def _response_of(obs: pd.DataFrame, response_key: str) -> np.ndarray:
    if response_key not in obs.columns:
        raise KeyError(f"`response_key`={response_key!r} is not a column of the clinical table; it has "
                       f"{list(obs.columns)}.")
    y = obs[response_key]
    if y.isna().any():
        raise ValueError(f"`{response_key}` has {int(y.isna().sum())} missing value(s); drop those slides first.")
    classes = pd.unique(y.astype(str))
    if len(classes) < 2:
        raise ValueError(f"The response column {response_key!r} has a single class ({classes[0]!r}); a classifier "
                         "needs at least two.")
    return y.astype(str).to_numpy(object)


def _targets(maps: OutcomeMaps, task: str, time_key: str, event_key: str, response_key: str) -> dict[str, Any]:
    if task == "survival":
        t, e = survival_of(maps.obs, time_key, event_key)
        return {"time": t, "event": e}
    if task == "response":
        return {"labels": _response_of(maps.obs, response_key)}
    raise ValueError(f"`task` must be 'survival' or 'response', got {task!r}.")


@doc_params
def train_outcome(
    maps: OutcomeMaps,
    *,
    task: str = "survival",
    clinical: Sequence[str] = (),
    slides: Sequence[str] | None = None,
    time_key: str = TIME_KEY,
    event_key: str = EVENT_KEY,
    response_key: str = "response",
    epochs: int | None = None,
    seed: int | None = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    **settings: Any,
) -> OutcomeModel:
    """Train HiST's outcome network on predicted gene maps of the training slides.

    A ConvNeXt-V2 (:class:`~hist_sd.nn.OutcomeConvNeXt`) reads each slide's maps (masked pooling: padding never
    changes a score); its pooled features are joined with the one-hot clinical covariates before the head. Survival
    is trained with the Cox partial likelihood (risk sets from sorted times, Efron ties), response with a
    class-weighted cross-entropy, for a number of epochs fixed in advance.

    Parameters
    ----------
    maps
        From :func:`outcome_maps`, with outcomes in ``maps.obs``.
    task
        ``"survival"`` or ``"response"``.
    clinical
        Clinical columns of ``maps.obs`` joined before the head (categorical ones one-hot, numeric ones with more
        than 10 values z-scored).
    slides
        Training slides (default all).
    time_key, event_key
        Survival columns (``event`` 1 = observed; without it ``1 - censorship``).
    response_key
        Response column (two or more classes).
    epochs
        Training epochs (default ``hs.tl.OUTCOME_DEFAULTS["epochs"]``: 20).
    %(seed)s
    %(device)s
    %(progress)s
    model_kwargs
        Passed to :class:`~hist_sd.nn.OutcomeConvNeXt` (``dims``, ``depths``, ``hidden``, ``drop_path``, ...).
    **settings
        ``lr``, ``weight_decay``, ``batch_size``, ``ties`` (see ``hs.tl.OUTCOME_DEFAULTS``).

    Returns
    -------
    The fitted :class:`~hist_sd.model.OutcomeModel`.
    """
    from hist_sd.train._outcome import fit_outcome

    maps = _check_maps(maps)
    sub = maps if slides is None else maps.subset(slides)
    tg = _targets(sub, task, time_key, event_key, response_key)
    return fit_outcome(sub.maps, sub.masks, sub.obs, genes=sub.genes, task=task, time=tg.get("time"),
                       event=tg.get("event"), labels=tg.get("labels"), clinical=list(clinical), shape=sub.shape,
                       seed=seed, device=device, model_kwargs=model_kwargs, progress=progress,
                       epochs=epochs, **settings)


@doc_params
def predict_outcome(maps: OutcomeMaps, model: OutcomeModel | str, *, slides: Sequence[str] | None = None,
                    by_patient: bool = False, device: str | torch.device = "auto") -> pd.DataFrame:
    """Score slides (or patients) with an outcome model.

    Parameters
    ----------
    maps
        From :func:`outcome_maps` (the model's genes and clinical columns must be there).
    model
        An :class:`~hist_sd.model.OutcomeModel` or the path of a saved one.
    slides
        Slides to score (default all).
    by_patient
        Average the slides of each patient (risks, or class probabilities) into one row per patient.
    %(device)s

    Returns
    -------
    Survival: ``risk`` (log-hazard; higher = earlier event) and ``risk_group`` (``"high"`` above the training
    median). Response: ``p_<class>`` per class and ``pred``. Indexed by slide id (or ``case_id``).
    """
    from hist_sd._core._runtime import get_device

    maps = _check_maps(maps)
    if not isinstance(model, OutcomeModel):
        from hist_sd.model import load_model

        model = load_model(model)  # type: ignore[assignment]
        if not isinstance(model, OutcomeModel):
            raise TypeError("`model`: the file is not an outcome model (hs.tl.train_outcome(...).save(path)).")
    sub = maps if slides is None else maps.subset(slides)
    df = model.predict(sub, device=get_device(device))
    if not by_patient:
        return df
    return _by_patient(df, sub.obs[PATIENT_KEY], model.threshold, model.classes)


def _by_patient(df: pd.DataFrame, patient: pd.Series, threshold: float, classes: Sequence[str]) -> pd.DataFrame:
    num = df.select_dtypes("number").groupby(patient.reindex(df.index).to_numpy(), sort=False).mean()
    num.index.name = PATIENT_KEY
    if "risk" in num:
        num["risk_group"] = np.where(num["risk"] > threshold, "high", "low")
    elif classes:
        num["pred"] = np.asarray(classes, dtype=object)[num[[f"p_{c}" for c in classes]].to_numpy().argmax(axis=1)]
    return num

# ----------------------------------------------------------------------------------------------- cross-validation
@dataclass
class OutcomeCV:
    """Result of :func:`cross_validate_outcome`.

    Attributes
    ----------
    scores
        One row per method and fold, on the held-out patients. Survival: ``c_index`` (Harrell), ``c_index_uno``,
        ``logrank_p`` (split at the training median), ``n_test``, ``n_events``. Response: ``auc``,
        ``balanced_accuracy``, ``f1``.
    summary
        Per method: mean and standard deviation over folds of each metric, and the same metrics ``pooled_*`` over
        all out-of-fold patients.
    predictions
        One row per held-out patient and method: ``case_id``, ``method``, ``fold``, the score(s) and the outcome.
    folds
        The fold of every slide (all slides of a patient share one).
    """

    scores: pd.DataFrame
    summary: pd.DataFrame
    predictions: pd.DataFrame
    folds: pd.Series

    def patients(self, method: str = "convnext", fold: int | None = None) -> AnnData:
        """Held-out patients of ``method`` (one ``fold`` or all) as an AnnData for :func:`hist_sd.pl.kaplan_meier`.

        ``obs`` has ``risk``, ``risk_group`` (split at each fold's training median: use
        ``hs.pl.kaplan_meier(adata, groups_key="risk_group")``), ``fold``, ``survival_months`` and ``event``.
        """
        from anndata import AnnData

        p = self.predictions
        if method not in set(p["method"]):
            raise KeyError(f"`method`={method!r} was not cross-validated; methods: {sorted(set(p['method']))}.")
        sel = p[(p["method"] == method) & ((p["fold"] == fold) if fold is not None else True)]
        obs = sel.drop(columns=["method"]).set_index(PATIENT_KEY)
        obs.index = obs.index.astype(str)
        return AnnData(obs=obs)


def outcome_folds(obs: pd.DataFrame, *, task: str = "survival", n_folds: int = 5, seed: int = 0,
                  time_key: str = TIME_KEY, event_key: str = EVENT_KEY, response_key: str = "response") -> pd.Series:
    """Fold of every slide: patients stratified by event (survival) or response, each patient in one fold.

    Parameters
    ----------
    obs
        One row per slide with ``case_id`` and the outcome columns (``OutcomeMaps.obs``).
    task, time_key, event_key, response_key
        As :func:`train_outcome`.
    n_folds
        Number of folds (``2 <= n_folds <= number of patients``).
    seed
        Seed of the shuffling of the patients.

    Returns
    -------
    Integer folds ``0 .. n_folds - 1`` indexed like ``obs``.
    """
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    groups = obs[PATIENT_KEY].astype(str).to_numpy()
    n_pat = len(set(groups))
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or not 2 <= n_folds <= n_pat:
        raise ValueError(f"`n_folds` must be an integer in 2..{n_pat} (the number of patients), got {n_folds!r}.")
    if task == "survival":
        y = survival_of(obs, time_key, event_key)[1].astype(int).astype(str)
    else:
        y = _response_of(obs, response_key).astype(str)
    folds = np.full(len(obs), -1, np.int64)
    with warnings.catch_warnings():  # a class rarer than n_folds: still split, as evenly as it can
        warnings.simplefilter("ignore", UserWarning)
        split = StratifiedGroupKFold(n_splits=int(n_folds), shuffle=True, random_state=seed)
        for k, (_, test) in enumerate(split.split(np.zeros(len(y)), y, groups)):
            folds[test] = k
    return pd.Series(folds, index=obs.index, name="fold")


def _safe(fn: Any, *args: Any, **kwargs: Any) -> float:
    """A metric, or NaN where it is undefined (e.g. no comparable pair in a small fold)."""
    try:
        return float(fn(*args, **kwargs))
    except ValueError:
        return float("nan")


def _surv_scores(test: pd.DataFrame, train: pd.DataFrame) -> dict[str, float]:
    from hist_sd._core._survival import harrell_c, logrank_p, uno_c

    t, e, r = test[TIME_KEY].to_numpy(float), test[EVENT_KEY].to_numpy(bool), test["risk"].to_numpy(float)
    tau = float(min(train[TIME_KEY].max(), t.max()))
    groups = test["risk_group"].to_numpy(object)
    return {"c_index": _safe(harrell_c, t, e, r),
            "c_index_uno": _safe(uno_c, t, e, r, train_time=train[TIME_KEY].to_numpy(float),
                                 train_event=train[EVENT_KEY].to_numpy(bool), tau=tau),
            "logrank_p": _safe(logrank_p, t, e, groups) if len(set(groups)) == 2 and e.any() else float("nan"),
            "n_test": len(t), "n_events": int(e.sum())}


def _resp_scores(test: pd.DataFrame, classes: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    y = test["response"].astype(str).to_numpy()
    p = test[[f"p_{c}" for c in classes]].to_numpy(float)
    pred = np.asarray(classes, dtype=object)[p.argmax(axis=1)].astype(str)
    if len(classes) == 2:
        auc = _safe(roc_auc_score, y == classes[1], p[:, 1])
        f1 = _safe(f1_score, y, pred, pos_label=classes[1], average="binary", zero_division=0)
    else:
        auc = _safe(roc_auc_score, y, p / p.sum(axis=1, keepdims=True), multi_class="ovr", labels=list(classes))
        f1 = _safe(f1_score, y, pred, average="macro", zero_division=0)
    return {"auc": auc, "balanced_accuracy": _safe(balanced_accuracy_score, y, pred), "f1": f1, "n_test": len(y)}


def _patient_table(obs: pd.DataFrame, task: str, tg: dict[str, Any]) -> pd.DataFrame:
    """One outcome row per patient (its slides must agree)."""
    df = pd.DataFrame({PATIENT_KEY: obs[PATIENT_KEY].astype(str).to_numpy()}, index=obs.index)
    if task == "survival":
        df[TIME_KEY], df[EVENT_KEY] = tg["time"], tg["event"]
    else:
        df["response"] = tg["labels"]
    n_rows = df.drop_duplicates().groupby(PATIENT_KEY).size()
    if (n_rows > 1).any():
        raise ValueError(f"The slides of patient(s) {list(n_rows.index[n_rows > 1][:5])} carry different outcomes; "
                         "one patient has one outcome.")
    return df


def _baseline_inputs(maps: OutcomeMaps, clinical: Sequence[str]) -> dict[str, tuple[np.ndarray | None, int | None]]:
    """The baselines' slide vectors: clinical (encoded per fold), mean image features, pseudo-bulk."""
    out: dict[str, tuple[np.ndarray | None, int | None]] = {}
    if clinical:
        out["clinical"] = (None, None)
    if maps.features is not None:
        out["image_features"] = (maps.features, 16)
    out["pseudo_bulk"] = (maps.pseudo_bulk(), 16)
    return out


def _baseline_fold(name: str, x: np.ndarray | None, k: int | None, maps: OutcomeMaps, clinical: Sequence[str],
                   task: str, tr: np.ndarray, te: np.ndarray, tg: dict[str, Any], seed: int) -> pd.DataFrame:
    """Slide scores of one baseline on one fold (trained on ``tr``, scored on ``te``)."""
    from hist_sd.model._outcome import encode_clinical
    from hist_sd.train._outcome import clinical_spec, cox_baseline, logistic_baseline

    if x is None:  # clinical covariates only
        spec = clinical_spec(maps.obs.iloc[tr], clinical)
        x = encode_clinical(maps.obs, spec)
    index = pd.Index([maps.names[i] for i in te], name=SLIDE_KEY)
    if task == "survival":
        r_tr, r_te = cox_baseline(x[tr], tg["time"][tr], tg["event"][tr], x[te], n_components=k)
        thr = float(np.median(r_tr))
        return pd.DataFrame({"risk": r_te, "risk_group": np.where(r_te > thr, "high", "low")}, index=index).assign(
            threshold=thr)
    proba, classes = logistic_baseline(x[tr], tg["labels"][tr], x[te], n_components=k, seed=seed)
    df = pd.DataFrame(proba, index=index, columns=[f"p_{c}" for c in classes])
    every = sorted(set(tg["labels"]))  # a class missing from the training fold gets probability 0
    return df.reindex(columns=[f"p_{c}" for c in every], fill_value=0.0)


def _fold_methods(maps: OutcomeMaps, task: str, clinical: Sequence[str], tr: np.ndarray, te: np.ndarray,
                  tg: dict[str, Any], baselines: bool, seed: int, fit: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Slide scores of the network and the baselines on one fold."""
    from hist_sd.train._outcome import fit_outcome

    train, test = maps.subset([maps.names[i] for i in tr]), maps.subset([maps.names[i] for i in te])
    model = fit_outcome(train.maps, train.masks, train.obs, genes=train.genes, task=task,
                        time=tg["time"][tr] if task == "survival" else None,
                        event=tg["event"][tr] if task == "survival" else None,
                        labels=tg["labels"][tr] if task == "response" else None, clinical=list(clinical),
                        shape=maps.shape, seed=seed, **fit)
    out = {"convnext": model.predict(test).assign(threshold=model.threshold)}
    if baselines:
        for name, (x, k) in _baseline_inputs(maps, clinical).items():
            out[name] = _baseline_fold(name, x, k, maps, clinical, task, tr, te, tg, seed)
    return out


def _summary(scores: pd.DataFrame, preds: pd.DataFrame, task: str, classes: Sequence[str]) -> pd.DataFrame:
    metrics = ["c_index", "c_index_uno", "logrank_p"] if task == "survival" else ["auc", "balanced_accuracy", "f1"]
    rows = []
    for method, s in scores.groupby("method", sort=False):
        row: dict[str, Any] = {"method": method, "n_folds": len(s)}
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_sd"] = float(s[m].mean()), float(s[m].std(ddof=1))
        p = preds[preds["method"] == method]
        if task == "survival":
            from hist_sd._core._survival import harrell_c, logrank_p

            row["pooled_c_index"] = _safe(harrell_c, p[TIME_KEY], p[EVENT_KEY], p["risk"])
            row["pooled_logrank_p"] = _safe(logrank_p, p[TIME_KEY], p[EVENT_KEY], p["risk_group"])
        else:
            pooled = _resp_scores(p, classes)
            row.update({f"pooled_{k}": v for k, v in pooled.items() if k != "n_test"})
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


@doc_params
def cross_validate_outcome(
    maps: OutcomeMaps,
    *,
    task: str = "survival",
    clinical: Sequence[str] = (),
    n_folds: int = 5,
    folds: pd.Series | None = None,
    baselines: bool = True,
    time_key: str = TIME_KEY,
    event_key: str = EVENT_KEY,
    response_key: str = "response",
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    **settings: Any,
) -> OutcomeCV:
    """Cross-validate the outcome network and its baselines on the same patient-grouped, stratified folds.

    Folds (:func:`outcome_folds`) keep every patient's slides on one side (the reference code splits slides) and
    are stratified by event (survival) or response. Each model is fit on its training fold only and scored once
    on the held-out fold, after a number of epochs fixed in advance (the reference reports its best validation
    epoch). Slide scores are averaged per patient. Baselines on the same folds: clinical covariates only,
    mean image features (PCA-16) and predicted pseudo-bulk (PCA-16 above 16 genes) -> penalised Cox (lifelines) or
    class-balanced logistic regression.

    Parameters
    ----------
    maps
        From :func:`outcome_maps`, with outcomes in ``maps.obs``.
    task, clinical, time_key, event_key, response_key, epochs, model_kwargs, **settings
        As :func:`train_outcome`.
    n_folds
        Number of folds (default 5).
    folds
        Precomputed folds (a fold number per slide, indexed by slide id) instead of :func:`outcome_folds`.
    baselines
        Also run the baselines.
    %(seed)s
    %(device)s
    %(progress)s

    Returns
    -------
    An :class:`OutcomeCV` (per-fold ``scores``, ``summary`` with pooled metrics, out-of-fold ``predictions``).
    """
    maps = _check_maps(maps)
    tg = _targets(maps, task, time_key, event_key, response_key)
    outcome = _patient_table(maps.obs, task, tg)
    if folds is None:
        folds = outcome_folds(maps.obs, task=task, n_folds=n_folds, seed=seed, time_key=time_key,
                              event_key=event_key, response_key=response_key)
    folds = pd.Series(folds).reindex(pd.Index(maps.names))
    if folds.isna().any():
        raise ValueError("`folds` must give a fold to every slide of `maps`.")
    shared = folds.groupby(maps.obs[PATIENT_KEY].to_numpy()).nunique()
    if (shared > 1).any():
        raise ValueError(f"`folds`: patient(s) {list(shared.index[shared > 1][:5])} have slides in several folds.")
    classes = sorted(set(tg["labels"])) if task == "response" else []
    fit = {"epochs": epochs, "device": device, "model_kwargs": model_kwargs, "progress": False, **settings}
    t0 = time.perf_counter()
    rows, preds = [], []
    from hist_sd._core._runtime import progress as progress_bar

    for k in progress_bar(sorted(folds.unique()), enabled=progress, desc="folds"):
        te = np.flatnonzero(folds.to_numpy() == k)
        tr = np.flatnonzero(folds.to_numpy() != k)
        train_pat = outcome.iloc[tr].drop_duplicates(PATIENT_KEY)
        for method, df in _fold_methods(maps, task, clinical, tr, te, tg, baselines, seed, fit).items():
            thr = float(df["threshold"].iloc[0]) if "threshold" in df else float("nan")
            pat = _by_patient(df.drop(columns=["threshold"], errors="ignore"), maps.obs[PATIENT_KEY], thr, classes)
            pat = pat.join(outcome.drop_duplicates(PATIENT_KEY).set_index(PATIENT_KEY))
            sc = _surv_scores(pat, train_pat) if task == "survival" else _resp_scores(pat, classes)
            rows.append({"method": method, "fold": int(k), **sc})
            preds.append(pat.reset_index().assign(method=method, fold=int(k)))
            logger.info("fold %d %-15s %s", k, method, ", ".join(f"{a} {b:.3f}" for a, b in sc.items()))
    scores, predictions = pd.DataFrame(rows), pd.concat(preds, ignore_index=True)
    summary = _summary(scores, predictions, task, classes)
    summary.attrs["seconds"] = round(time.perf_counter() - t0, 1)
    return OutcomeCV(scores=scores, summary=summary, predictions=predictions, folds=folds.astype(int))
