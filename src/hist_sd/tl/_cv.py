"""Leave-one-group-out cross-validation with everything learned inside the fold."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._core._data import as_sections, resolve
from hist_sd._core._expr import measured_genes
from hist_sd._core._grid import neighbours
from hist_sd._core._runtime import progress as progress_bar
from hist_sd._core._stats import mean_ci, morans_i, n_components
from hist_sd._docs import doc_params
from hist_sd.model import HistModel, Section, TaskSpec, get_method, get_task, prepare_section
from hist_sd.tl._train import feature_record
from hist_sd.train import fit_sections

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")


def _group_of(name: str, adata: AnnData, groups: str | Mapping[str, str]) -> str:
    if isinstance(groups, Mapping):
        if name not in groups:
            raise KeyError(f"`groups` has no entry for section {name!r}.")
        return str(groups[name])
    if groups == "section":
        return name
    if groups not in adata.obs:
        raise KeyError(f"`groups`={groups!r} is not an obs column of section {name!r} (nor 'section').")
    vals = adata.obs[groups].astype(str).unique()
    if len(vals) != 1:
        raise ValueError(f"Section {name!r} has several values of obs[{groups!r}]: {list(vals)[:5]}.")
    return str(vals[0])


def select_genes(
    tables: Sequence[AnnData], *, n_top: int, spatial_genes_kwargs: Mapping[str, Any] | None = None,
    progress_bar: bool = False,
) -> list[str]:
    """Top ``n_top`` spatially variable genes of ``tables`` by median Moran's I (on copies: the tables are untouched).

    By default every gene with a positive Moran's I in every table is a candidate (``min_moran=0``,
    ``max_pval=1``) and the ``n_top`` with the highest median I are kept: HiST's fixed threshold (median I > 0.4,
    significant in every section) was set on Visium sections and selects no gene on two dozen small legacy-ST
    sections, where a 15-neighbour graph spans two rings of spots. Pass ``spatial_genes_kwargs`` to apply
    HiST's thresholds.
    """
    from hist_sd.pp import spatial_genes

    kw = {"n_top": n_top, "progress": progress_bar, "min_moran": 0.0, "max_pval": 1.0,
          **dict(spatial_genes_kwargs or {})}
    light = {str(i): AnnData(X=t.X, obs=t.obs.copy(), var=pd.DataFrame(index=t.var_names.copy()),
                            obsm={C.SPATIAL: np.asarray(t.obsm[C.SPATIAL])},
                            layers={k: t.layers[k] for k in ("counts",) if k in t.layers},
                            uns={C.UNS_KEY: dict(t.uns.get(C.UNS_KEY, {}))})
             for i, t in enumerate(tables)}
    ranked = spatial_genes(light, **kw)
    sel = ranked.index[ranked["selected"]] if "selected" in ranked else ranked.index
    genes = [str(g) for g in sel][:n_top]
    if not genes:
        raise ValueError("No spatially variable gene passed the selection in the training sections; relax `min_moran`.")
    return genes


def summarize(scores: pd.DataFrame, *, by: Sequence[str] = ("method",), metric: str = "pearson") -> pd.DataFrame:
    """Mean, median, genes with r > 0.3 and a 95% t-interval of the mean over held-out sections.

    The per-section mean of ``metric`` over genes is the unit of the interval (sections are the independent
    units of a cross-validation); ``mean`` is the mean over sections of those per-section means.
    """
    by = [b for b in by if b in scores.columns]
    rows = []
    groups = scores.groupby(by, sort=False) if by else [((), scores)]
    for key, df in groups:
        per_section = df.groupby("section", sort=False)[metric].mean()
        ci = mean_ci(per_section.to_numpy())
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row.update({f"mean_{metric}": ci["mean"], "ci95_low": ci["ci_low"], "ci95_high": ci["ci_high"],
                    f"median_{metric}": float(df[metric].median()), "n_sections": len(per_section)})
        if "gene" in df:
            row["genes_r_gt_0.3"] = float(df.groupby("section", sort=False)[metric].apply(lambda s: (s > 0.3).sum()).mean())
            row["n_genes"] = int(df["gene"].nunique())
            for col in ("moran_pred", "moran_true"):
                if col in df:
                    row[f"median_{col}"] = float(df[col].median())
            for col in ("n_pc90_pred", "n_pc90_true"):
                if col in df:
                    row[col] = float(df.groupby("section", sort=False)[col].first().mean())
        else:  # segmentation: means of the other metrics over sections
            for col in ("iou", "dice", "sensitivity", "precision", "f1", "specificity", "accuracy"):
                if col in df:
                    row[f"mean_{col}"] = float(df[col].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def smoothness(section: Section, pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Over-smoothing of in-tissue predictions against the measured values, per gene and per section.

    ``moran_pred`` / ``moran_true``: each gene's Moran's I on the section's grid neighbours (in-tissue spots);
    ``n_pc90_pred`` / ``n_pc90_true``: principal components carrying 90% of the variance over the genes.
    """
    keep = section.in_tissue
    pairs = neighbours(section.rows[keep], section.cols[keep], section.layout, row_parity=section.row_parity)
    return {"moran_pred": morans_i(pred, pairs), "moran_true": morans_i(truth, pairs),
            "n_pc90_pred": n_components(pred), "n_pc90_true": n_components(truth)}


@dataclass(frozen=True)
class CVResult:
    """What :func:`cross_validate` returns, whatever its flags.

    Attributes
    ----------
    scores
        Tidy scores: one row per held-out section and gene (expression) or per held-out section (tumour).
    summary
        One row: the mean of the task's metric over held-out sections with its 95% interval, and timings.
    models
        ``{fold: model}`` when asked for with ``return_models=True``, else empty.
    """

    scores: pd.DataFrame
    summary: pd.DataFrame
    models: dict[str, HistModel] = field(default_factory=dict)


@doc_params
def cross_validate(
    sdatas: Sequence[AnnData | SpatialData] | Mapping[str, AnnData | SpatialData],
    *,
    groups: str | Mapping[str, str] = "patient",
    method: str = "hist",
    task: str = "expression",
    genes: int | Sequence[str] | Mapping[str, Sequence[str]] = 50,
    truth_key: str = C.TUMOR,
    features_key: str = C.FEATURES,
    gene_sections: Sequence[AnnData | SpatialData] | Mapping[str, AnnData | SpatialData] | None = None,
    spatial_genes_kwargs: Mapping[str, Any] | None = None,
    train_kwargs: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    table_key: str | None = None,
    progress: bool = True,
    return_models: bool = False,
) -> CVResult:
    """Leave-one-group-out cross-validation of expression prediction or tumour segmentation.

    For each group (patient by default) the model is trained on the other groups' slides and scored on the held-out
    slides. Everything learned (gene selection, feature and target standardisation, weights) uses the training
    slides of the fold only, and no epoch or checkpoint is chosen on the held-out slides.

    Parameters
    ----------
    sdatas
        Slides with features in ``obsm[features_key]`` and raw counts.
    groups
        ``obs`` column naming each slide's group (``"patient"``), ``"section"`` for leave-one-section-out, or a
        mapping from section name to group.
    method
        See :func:`hist_sd.tl.train` (``"hist"``, ablations, ``"ridge"``, ``"mlp"``, ``"transformer"``, ``"gnn"``).
    task
        ``"expression"`` (scored by per-gene correlation) or ``"tumor"`` (segmentation of ``obs[truth_key]``,
        scored with :func:`hist_sd.tl.evaluate_segmentation`'s metrics).
    genes
        A number: that many top spatially variable genes, selected per fold with :func:`hist_sd.pp.spatial_genes`
        on the training slides (plus ``gene_sections`` of training groups); a fixed gene list; or a mapping from
        fold (group) to the genes chosen for it beforehand on that fold's training slides.
    truth_key
        ``obs`` column with tumour labels (``task="tumor"``).
    features_key
        ``obsm`` key of the features.
    gene_sections
        Extra slides (counts only, e.g. her2st's sections without images) used for gene selection only, never
        when their group is held out.
    spatial_genes_kwargs
        Passed to :func:`hist_sd.pp.spatial_genes`.
    train_kwargs
        Passed to the training engine, as the options of :func:`hist_sd.tl.train` (``lr``, ``preset``,
        ``model_kwargs``, ``device`` ...).
    epochs
        Training epochs of every fold (default: the method's); the same as ``train_kwargs={"epochs": ...}``.
    seed
        Seed of every fold's training.
    %(tables_key)s
    %(progress)s
    return_models
        Keep every fold's model in ``result.models`` (the fold genes are in ``model.genes``).

    Returns
    -------
    A :class:`CVResult`: ``scores``, a tidy DataFrame (method, fold, section, gene, pearson, spearman, n_spots);
    ``summary``, one row with mean PCC and its 95% confidence interval over held-out sections, median PCC, genes
    with r > 0.3, mean training seconds per fold and prediction seconds per section; ``models``. For
    ``task="tumor"``, ``scores`` has one row per held-out section with the segmentation metrics and ``summary``
    their means (with a 95% interval of the AUC).
    """
    spec = get_method(method)
    tspec = get_task(task)
    spec.check_task(tspec)
    datas = as_sections(sdatas)
    tables = {n: resolve(d, table_key)[1] for n, d in datas.items()}
    group_of = {n: _group_of(n, t, groups) for n, t in tables.items()}
    if len(set(group_of.values())) < 2:
        raise ValueError(f"Cross-validation needs at least two groups; all slides are in {set(group_of.values())}.")
    extra = {n: resolve(d, table_key)[1] for n, d in as_sections(gene_sections).items()} if gene_sections else {}
    extra_group = {n: _group_of(n, t, groups if groups != "section" else "section") for n, t in extra.items()}
    recorded = feature_record(list(tables.values()), features_key)
    tkw = dict(train_kwargs or {})
    if epochs is not None:
        if "epochs" in tkw and tkw["epochs"] != epochs:
            raise ValueError(f"`epochs`={epochs} and `train_kwargs['epochs']`={tkw['epochs']} disagree; give one.")
        tkw["epochs"] = epochs
    tkw.setdefault("seed", seed)
    layout = tkw.pop("layout", "auto")
    base = {
        n: prepare_section(datas[n], features_key=features_key, table_key=table_key, name=n, group=group_of[n],
                           layout=layout, pad_multiple=tkw.get("pad_multiple", 16))
        for n in datas
    }
    rows: list[pd.DataFrame] = []
    models: dict[str, HistModel] = {}
    timings: dict[str, list[float]] = {"train": [], "predict": []}
    folds = list(dict.fromkeys(group_of.values()))
    for fold in progress_bar(folds, enabled=progress, desc=f"cv {method}"):
        train_names = [n for n in datas if group_of[n] != fold]
        test_names = [n for n in datas if group_of[n] == fold]
        fold_genes = _fold_genes(fold, genes, tspec, truth_key=truth_key, pool=[tables[n] for n in train_names]
                                 + [t for n, t in extra.items() if extra_group[n] != fold],
                                 spatial_genes_kwargs=spatial_genes_kwargs)
        train_secs = [replace(base[n], targets=tspec.targets(tables[n], fold_genes, truth_key)) for n in train_names]
        model = fit_sections(
            train_secs, genes=tspec.outputs(fold_genes, truth_key), task=task, method=method,
            features_key=features_key, **recorded, show_progress=False, **tkw,
        )
        timings["train"].append(model.params["train_seconds"])
        logger.info("fold %s: %s trained on %s in %.1f s", fold, method, train_names, model.params["train_seconds"])
        for n in test_names:
            t0 = time.perf_counter()
            pred = tspec.link(model.predict_section(base[n]))
            timings["predict"].append(time.perf_counter() - t0)
            tissue = base[n].in_tissue
            outputs = model.genes
            if tspec.needs_genes:  # genes the held-out table does not measure are not scored (as in evaluate)
                outputs = measured_genes(tables[n], model.genes, what=f"held-out section {n!r}")
                pred = pred[:, [model.genes.index(g) for g in outputs]]
            truth = tspec.targets(tables[n], outputs if tspec.needs_genes else fold_genes, truth_key)
            df = tspec.score(pred[tissue], truth[tissue], outputs, n)
            if tspec.needs_genes:
                df = df.assign(**smoothness(base[n], pred[tissue], truth[tissue]))
            df.insert(0, "section", n)
            df.insert(0, "fold", fold)
            df.insert(0, "method", method)
            rows.append(df)
        if return_models:
            models[fold] = model
    scores = pd.concat(rows, ignore_index=True)
    summary = summarize(scores, metric=tspec.metric)
    summary["train_seconds_per_fold"] = float(np.mean(timings["train"]))
    summary["predict_seconds_per_section"] = float(np.mean(timings["predict"]))
    return CVResult(scores=scores, summary=summary, models=models)


def _fold_genes(
    fold: str, genes: int | Sequence[str] | Mapping[str, Sequence[str]] | None, task: TaskSpec, *, truth_key: str,
    pool: Sequence[AnnData], spatial_genes_kwargs: Mapping[str, Any] | None,
) -> list[str] | None:
    """The genes of one fold: none for tasks without genes, a given list, or selected on the fold's training data."""
    if not task.needs_genes:
        return None
    if isinstance(genes, Mapping):
        if fold not in genes:
            raise KeyError(f"`genes` has no gene list for fold {fold!r}.")
        return list(genes[fold])
    if isinstance(genes, int | np.integer):
        return select_genes(pool, n_top=int(genes), spatial_genes_kwargs=spatial_genes_kwargs)
    return list(genes)
