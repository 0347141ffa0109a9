"""Whole-slide survival verbs: train, predict (slides only) and cross-validate on a :class:`~hist_sd.io.Cohort`."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hist_sd._core._params import check_key_free, log_written, store_params
from hist_sd._core._runtime import n_jobs as resolve_n_jobs
from hist_sd._core._runtime import progress as progress_bar
from hist_sd._docs import doc_params
from hist_sd.model._survival import SurvivalModel
from hist_sd.train._survival import fit_survival, survival_settings

if TYPE_CHECKING:
    import torch

    from hist_sd.io import Cohort

logger = logging.getLogger("hist_sd")

__all__ = ["SurvivalCV", "cross_validate_survival", "predict_survival", "train_survival"]

#: Methods of :func:`cross_validate_survival` when none are named: G-HANet and the slide-only baselines.
DEFAULT_SURVIVAL_METHODS: tuple[str, ...] = ("ghanet", "abmil", "transmil", "meanpool")


def _check_cohort(cohort: Any) -> Cohort:
    from hist_sd.io import Cohort

    if not isinstance(cohort, Cohort):
        raise TypeError(
            f"`cohort` must be a hist_sd Cohort (hs.datasets.tcga / hs.io.read_cohort), got {type(cohort).__name__}."
        )
    return cohort


def _cases(cohort: Cohort, cases: Sequence[str] | None) -> list[str]:
    if cases is None:
        return list(cohort.patients.obs_names)
    cases = [str(c) for c in cases]
    missing = [c for c in cases if c not in cohort.patients.obs_names]
    if missing:
        raise KeyError(f"`cases`: {len(missing)} are not patients of the cohort, e.g. {missing[:3]}.")
    return cases


def _inputs(cohort: Cohort, cases: list[str]) -> dict[str, Any]:
    """Bags, survival and genomics of ``cases`` (in that order), and the cohort's gene families."""
    from hist_sd import get

    sub = cohort.patients[cases]
    x = sub.X.toarray() if hasattr(sub.X, "toarray") else np.asarray(sub.X)
    families = {k: v for k, v in get.families(cohort).items() if v}
    if not families and sub.n_vars:
        logger.info("%s has no gene families: its %d genomic columns form one family", cohort.name, sub.n_vars)
        families = {"genomics": list(sub.var_names)}
    return {
        "bags": cohort.bags(cases),
        "time": sub.obs["survival_months"].to_numpy(np.float64),
        "event": sub.obs["event"].to_numpy(bool),
        "genomics": pd.DataFrame(x, index=sub.obs_names, columns=sub.var_names),
        "families": families,
    }


@doc_params
def train_survival(
    cohort: Cohort,
    *,
    method: str = "ghanet",
    cases: Sequence[str] | None = None,
    epochs: int | None = None,
    seed: int | None = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    **settings: Any,
) -> SurvivalModel:
    """Train a whole-slide survival model on the patients ``cases`` of ``cohort``.

    Only the training patients' bags, survival and genomics are read; the time bins, the genes of each family
    (Welch t-test, G-HANet's rule), the standardisation, PCA and the high/low risk threshold are learned from them.
    G-HANet reconstructs the genomic families during training and needs only the slides to predict.

    Parameters
    ----------
    %(cohort)s
    method
        A survival method of ``hs.model.METHODS``: ``"ghanet"`` (and its ablations ``"ghanet_nocab"``,
        ``"ghanet_nohyper"``), ``"abmil"``, ``"transmil"``, ``"meanpool"`` (mean feature, PCA-8, penalised Cox),
        ``"snn"`` and ``"coxgenomics"`` (genome at test time: references, not slide-only methods).
    cases
        Training patients (``patients.obs_names``); default all.
    epochs
        Training epochs, fixed in advance (default the method's: 20).
    %(seed)s
    %(device)s
    %(progress)s
    model_kwargs
        Passed to the network's constructor (e.g. ``dim=256``, or ``shared_cross_attention=True`` for the reference
        code's weight sharing).
    **settings
        Override the training settings ``hs.tl.SURVIVAL_DEFAULTS`` (``lr``, ``weight_decay``, ``batch_size``,
        ``recon_weight``, ``n_bins``, ``gene_p``, ``cox_penalizer``).

    Returns
    -------
    The fitted :class:`~hist_sd.model.SurvivalModel`.

    Examples
    --------
    >>> import hist_sd as hs
    >>> blca = hs.datasets.tcga("blca")
    >>> train, test = blca.fold(0)
    >>> model = hs.tl.train_survival(blca, method="meanpool", cases=train)
    >>> hs.tl.predict_survival(blca, model, cases=test)
    >>> blca.patients.obs["risk"].notna().sum() == len(test)
    np.True_
    """
    cohort = _check_cohort(cohort)
    cases = _cases(cohort, cases)
    d = _inputs(cohort, cases)
    return fit_survival(d["bags"], d["time"], d["event"], method=method, genomics=d["genomics"],
                        families=d["families"], epochs=epochs, seed=seed, device=device, show_progress=progress,
                        model_kwargs=model_kwargs, **settings)


@doc_params
def predict_survival(
    cohort: Cohort,
    model: SurvivalModel,
    *,
    cases: Sequence[str] | None = None,
    key_added: str = "risk",
    device: str | torch.device = "auto",
    overwrite: bool = False,
    copy: bool = False,
) -> Cohort | None:
    """Risk of each patient from its slides alone (or its genome, for the genomic references).

    Writes ``patients.obs[key_added]`` (higher = earlier event; NaN for patients outside ``cases``),
    ``patients.obs[f"{key_added}_group"]`` (``"high"``/``"low"``, split at the training patients' median risk) and
    the parameters in ``patients.uns[key_added]["params"]``.

    Parameters
    ----------
    cohort
        The patients to score.
    model
        From :func:`train_survival` or :func:`hist_sd.tl.load_model`.
    cases
        Patients to score; default all.
    key_added
        Name of the risk column.
    %(device)s
    overwrite
        Replace existing ``key_added`` columns.
    copy
        Return a new cohort instead of writing into ``cohort``.

    Returns
    -------
    ``None``, or the new cohort with ``copy=True``.
    """
    from hist_sd._core._runtime import get_device

    cohort = _check_cohort(cohort)
    if not isinstance(model, SurvivalModel):
        raise TypeError(f"`model` must be a SurvivalModel (hs.tl.train_survival), got {type(model).__name__}.")
    cases = _cases(cohort, cases)
    obs = cohort.patients.obs
    group_key = f"{key_added}_group"
    for k in (key_added, group_key):
        check_key_free(obs, k, "obs", overwrite=overwrite, protected=("survival_months", "event", "censorship"))
    check_key_free(cohort.patients.uns, key_added, "uns", overwrite=overwrite, protected=("hist_sd",))
    d = _inputs(cohort, cases)
    risk = model.predict_risk(d["bags"], genomics=model.genomic_input(d["genomics"]), device=get_device(device))
    if copy:
        cohort = cohort.subset(list(cohort.patients.obs_names))
    obs = cohort.patients.obs
    full = pd.Series(np.nan, index=obs.index, dtype=np.float64)
    full.loc[cases] = risk
    obs[key_added] = full
    obs[group_key] = pd.Categorical(
        np.where(full.isna(), None, np.where(full > model.threshold, "high", "low")), categories=["low", "high"]
    )
    store_params(cohort.patients, key_added, {"method": model.method, "threshold": model.threshold,
                                              "n_patients": len(cases), "inputs": model.inputs})
    log_written("obs", key_added, group_key)
    log_written("uns", key_added)
    return cohort if copy else None


@dataclass
class SurvivalCV:
    """Result of :func:`cross_validate_survival`.

    Attributes
    ----------
    scores
        One row per method, seed and fold: ``cohort, method, seed, fold, c_index, c_index_uno, n_train, n_test,
        n_events, threshold, logrank_p, train_seconds``.
    summary
        Per method: mean and standard deviation over folds (and seeds) of both C-indices.
    risks
        One row per held-out patient, method and seed: ``case_id, method, seed, fold, risk, group``.
    """

    scores: pd.DataFrame
    summary: pd.DataFrame
    risks: pd.DataFrame


def _score(test: dict[str, Any], train: dict[str, Any], risk: np.ndarray, threshold: float) -> dict[str, float]:
    """Harrell's and Uno's C-index and the log-rank p of the held-out patients split at the training median."""
    from hist_sd._core._survival import harrell_c, logrank_p, risk_groups, uno_c

    t, e = test["time"], test["event"]
    groups = risk_groups(risk, threshold)
    p = logrank_p(t, e, groups) if len(set(groups)) == 2 and e.any() else float("nan")
    tau = float(min(train["time"].max(), t.max()))
    return {"c_index": harrell_c(t, e, risk),
            "c_index_uno": uno_c(t, e, risk, train_time=train["time"], train_event=train["event"], tau=tau),
            "n_train": len(train["time"]), "n_test": len(t), "n_events": int(e.sum()), "threshold": threshold,
            "logrank_p": p}


def _fold_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one method on one fold's training patients and score its held-out patients (worker-safe)."""
    import torch

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    train, test = job["train"], job["test"]
    model = fit_survival(train["bags"], train["time"], train["event"], method=job["method"],
                         genomics=train["genomics"], families=train["families"], epochs=job["epochs"],
                         seed=job["seed"], device=job["device"], model_kwargs=job["model_kwargs"],
                         **job["settings"])
    risk = model.predict_risk(test["bags"], genomics=model.genomic_input(test["genomics"]))
    row = {"method": job["method"], "seed": job["seed"], "fold": job["fold"],
           **_score(test, train, risk, model.threshold), "train_seconds": model.params["train_seconds"]}
    return {"row": row, "risk": risk, "threshold": model.threshold}


def _jobs(cohort: Cohort, methods: Sequence[str], folds: Sequence[int], seeds: Sequence[int], **common: Any) -> list[dict[str, Any]]:
    """One job per fold, method and seed; each carries only its fold's data."""
    jobs = []
    for k in folds:
        train_ids, test_ids = cohort.fold(k)
        train, test = _inputs(cohort, list(train_ids)), _inputs(cohort, list(test_ids))
        test["cases"] = list(test_ids)
        for method in methods:
            for seed in seeds:
                jobs.append({"method": method, "seed": int(seed), "fold": int(k), "train": train, "test": test, **common})
    return jobs


def _check_methods(methods: Sequence[str] | str | None) -> list[str]:
    from hist_sd.model import METHODS

    methods = [methods] if isinstance(methods, str) else list(methods or DEFAULT_SURVIVAL_METHODS)
    ok = [n for n, s in METHODS.items() if s.patient_level]
    bad = [m for m in methods if m not in ok]
    if bad:
        raise ValueError(f"`methods`: {bad} are not survival methods; choose from {ok}.")
    return methods


@doc_params
def cross_validate_survival(
    cohort: Cohort,
    *,
    methods: Sequence[str] | str | None = None,
    folds: Sequence[int] | None = None,
    seeds: Sequence[int] = (0,),
    epochs: int | None = None,
    key_added: str = "survival_cv",
    n_jobs: int | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
    overwrite: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    **settings: Any,
) -> SurvivalCV:
    """Cross-validate survival methods on the cohort's folds (the published 5-fold splits for TCGA).

    Every method sees the same folds and inputs. Each model is trained on its fold's training patients only
    (:func:`train_survival`), for a number of epochs fixed in advance, and scored once on the held-out fold: no
    epoch, checkpoint or setting is chosen on the reported fold. Writes the out-of-fold risks (mean over seeds)
    to ``patients.obsm[key_added]`` (patients x methods), their high/low groups (split at each fold's training
    median) to ``patients.obsm[f"{key_added}_group"]``, and the tidy scores to ``patients.uns[key_added]``.

    Parameters
    ----------
    cohort
        Patients with splits (``cohort.n_folds`` > 0).
    methods
        Survival methods (default ``ghanet``, ``abmil``, ``transmil``, ``meanpool``).
    folds
        Fold numbers; default all.
    seeds
        Training seeds; each method is trained once per fold and seed.
    epochs
        Epochs of the gradient-trained methods (default each method's: 20).
    key_added
        Where the results go.
    n_jobs
        Worker processes (one torch thread each); 1 runs in this process; ``None``: ``hs.settings.n_jobs``.
    %(device)s
    %(progress)s
    overwrite
        Replace existing ``key_added`` entries.
    model_kwargs, **settings
        As :func:`train_survival`, for every method.

    Returns
    -------
    A :class:`SurvivalCV` with tidy ``scores`` (``cohort, method, seed, fold, c_index, c_index_uno, ...``),
    ``summary`` and per-patient ``risks``.
    """
    cohort = _check_cohort(cohort)
    methods = _check_methods(methods)
    if cohort.n_folds == 0:
        raise ValueError("`cohort` has no splits; read it with `splits=` (a folder of splits_<k>.csv).")
    folds = list(range(cohort.n_folds)) if folds is None else [int(k) for k in folds]
    p = cohort.patients
    for k in (key_added, f"{key_added}_group"):
        check_key_free(p.obsm, k, "obsm", overwrite=overwrite)
    check_key_free(p.uns, key_added, "uns", overwrite=overwrite, protected=("hist_sd",))
    survival_settings(settings)  # fail before any fold is prepared
    workers = resolve_n_jobs(n_jobs)
    t0 = time.perf_counter()
    jobs = _jobs(cohort, methods, folds, seeds, epochs=epochs, device=device, settings=dict(settings),
                 model_kwargs=dict(model_kwargs or {}), threads=1 if workers > 1 else None)
    results = _run(jobs, n_jobs=workers, show_progress=progress)
    res = _collect(cohort, jobs, results, methods)
    _write(cohort, res, key_added, methods=methods, folds=folds, seeds=list(seeds), epochs=epochs, settings=settings)
    logger.info("cross-validated %d methods x %d folds x %d seeds on %s in %.0f s", len(methods), len(folds),
                len(seeds), cohort.name, time.perf_counter() - t0)
    return res


def _cost(job: dict[str, Any]) -> float:
    """Rough training cost of a job: instance passes, weighted by how heavy the method's network is."""
    from hist_sd.model import get_method

    spec = get_method(job["method"])
    weight = 0.01 if spec.fit == "cox" or spec.input == "patient" else (4.0 if spec.genomics == "train" else 1.0)
    return weight * sum(len(b) for b in job["train"]["bags"])


def _run(jobs: list[dict[str, Any]], *, n_jobs: int, show_progress: bool) -> list[dict[str, Any]]:
    """Run the jobs (in worker processes when ``n_jobs`` > 1, the longest first); results in job order."""
    if n_jobs <= 1:
        return [_fold_job(j) for j in progress_bar(jobs, enabled=show_progress, desc="folds")]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i]))
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {i: pool.submit(_fold_job, jobs[i]) for i in order}
        results = {i: f.result() for i, f in progress_bar(futures.items(), enabled=show_progress, total=len(jobs), desc="folds")}
    return [results[i] for i in range(len(jobs))]


def _collect(cohort: Cohort, jobs: list[dict[str, Any]], results: list[dict[str, Any]], methods: list[str]) -> SurvivalCV:
    from hist_sd._core._survival import risk_groups

    rows, risks = [], []
    for job, r in zip(jobs, results, strict=True):
        rows.append({"cohort": cohort.name, **r["row"]})
        risks.append(pd.DataFrame({"case_id": job["test"]["cases"], "method": job["method"], "seed": job["seed"],
                                   "fold": job["fold"], "risk": r["risk"],
                                   "group": risk_groups(r["risk"], r["threshold"])}))
    scores = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(methods)}
    scores = scores.sort_values(["method", "seed", "fold"], key=lambda c: c.map(order) if c.name == "method" else c,
                                kind="stable").reset_index(drop=True)
    summary = (scores.groupby("method", sort=False)[["c_index", "c_index_uno"]].agg(["mean", "std"]))
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    summary = summary.reset_index().assign(n_folds=scores.groupby("method", sort=False)["fold"].nunique().to_numpy())
    return SurvivalCV(scores=scores, summary=summary, risks=pd.concat(risks, ignore_index=True))


def _write(cohort: Cohort, res: SurvivalCV, key: str, **params: Any) -> None:
    """Out-of-fold risks (mean over seeds) and groups into ``obsm``, scores and parameters into ``uns``."""
    p = cohort.patients
    mean = res.risks.groupby(["case_id", "method"], sort=False)["risk"].mean().unstack("method")
    group = res.risks[res.risks["seed"] == res.risks["seed"].min()].set_index(["case_id", "method"])["group"].unstack("method")
    methods = list(params["methods"])
    p.obsm[key] = mean.reindex(index=p.obs_names, columns=methods).astype(np.float64)
    p.obsm[f"{key}_group"] = group.reindex(index=p.obs_names, columns=methods).fillna("").astype(str)
    store_params(p, key, {k: v for k, v in params.items() if k != "settings"} | dict(params["settings"]))
    p.uns[key]["scores"] = res.scores
    log_written("obsm", key, f"{key}_group")
    log_written("uns", key)
