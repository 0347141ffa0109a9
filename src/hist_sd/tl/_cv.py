"""Leave-one-group-out cross-validation with everything learned inside the fold."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._utils import as_sections, resolve
from hist_sd._utils import progress as progress_bar
from hist_sd.tl._data import Section, log_expression, prepare_section, tumor_targets
from hist_sd.tl._model import METHOD_KINDS
from hist_sd.tl._train import _encoder_name, fit_sections

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


def gene_scores(pred: np.ndarray, truth: np.ndarray, genes: Sequence[str]) -> pd.DataFrame:
    """Per-gene Pearson and Spearman correlations between ``pred`` and ``truth`` (``(n, g)``); NaN for constant genes."""
    from hist_sd.tl._evaluate import correlate

    pearson, spearman, n_spots = correlate(np.asarray(pred, np.float64), np.asarray(truth, np.float64))
    return pd.DataFrame({"gene": list(genes), "pearson": pearson, "spearman": spearman, "n_spots": n_spots})


def summarize(scores: pd.DataFrame, *, by: Sequence[str] = ("method",), metric: str = "pearson") -> pd.DataFrame:
    """Mean, median, genes with r > 0.3 and a 95% t-interval of the mean over held-out sections.

    The per-section mean of ``metric`` over genes is the unit of the interval (sections are the independent
    units of a cross-validation); ``mean`` is the mean over sections of those per-section means.
    """
    from scipy import stats

    by = [b for b in by if b in scores.columns]
    rows = []
    groups = scores.groupby(by, sort=False) if by else [((), scores)]
    for key, df in groups:
        per_section = df.groupby("section", sort=False)[metric].mean()
        k = len(per_section)
        mean = float(per_section.mean())
        half = float(stats.t.ppf(0.975, k - 1) * per_section.std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan")
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row.update({f"mean_{metric}": mean, "ci95_low": mean - half, "ci95_high": mean + half,
                    f"median_{metric}": float(df[metric].median()), "n_sections": k})
        if "gene" in df:
            row["genes_r_gt_0.3"] = float(df.groupby("section", sort=False)[metric].apply(lambda s: (s > 0.3).sum()).mean())
            row["n_genes"] = int(df["gene"].nunique())
        else:  # segmentation: means of the other metrics over sections
            for col in ("iou", "dice", "sensitivity", "precision", "f1", "specificity", "accuracy"):
                if col in df:
                    row[f"mean_{col}"] = float(df[col].mean())
        rows.append(row)
    return pd.DataFrame(rows)


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
    seed: int = 0,
    table_key: str | None = None,
    progress: bool = True,
    return_models: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame] | tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
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
        Passed to the training engine (``epochs``, ``lr``, ``preset``, ``model_kwargs``, ``device`` ...).
    seed
        Seed of every fold's training.
    table_key
        Table of each SpatialData.
    progress
        Show progress.
    return_models
        Also return ``{fold: model}`` (and the fold genes in ``model.genes``).

    Returns
    -------
    ``scores``: tidy DataFrame (method, fold, section, gene, pearson, spearman, n_spots); ``summary``: one row with
    mean PCC and its 95% confidence interval over held-out sections, median PCC, genes with r > 0.3, mean training
    seconds per fold and prediction seconds per section. For ``task="tumor"``, ``scores`` has one row per held-out
    section with the segmentation metrics and ``summary`` their means (with a 95% interval of the AUC).
    """
    if method not in METHOD_KINDS:
        raise ValueError(f"`method` must be one of {sorted(METHOD_KINDS)}, got {method!r}.")
    if task not in ("expression", "tumor"):
        raise ValueError(f"`task` must be 'expression' or 'tumor', got {task!r}.")
    datas = as_sections(sdatas)
    tables = {n: resolve(d, table_key)[1] for n, d in datas.items()}
    group_of = {n: _group_of(n, t, groups) for n, t in tables.items()}
    if len(set(group_of.values())) < 2:
        raise ValueError(f"Cross-validation needs at least two groups; all slides are in {set(group_of.values())}.")
    extra = {n: resolve(d, table_key)[1] for n, d in as_sections(gene_sections).items()} if gene_sections else {}
    extra_group = {n: _group_of(n, t, groups if groups != "section" else "section") for n, t in extra.items()}
    encoder = _encoder_name(list(tables.values()), features_key)
    tkw = dict(train_kwargs or {})
    tkw.setdefault("seed", seed)
    base = {
        n: prepare_section(datas[n], features_key=features_key, with_targets=False, table_key=table_key, name=n,
                           group=group_of[n],
                           layout=tkw.get("layout", "auto"), pad_multiple=tkw.get("pad_multiple", 16))
        for n in datas
    }
    rows: list[pd.DataFrame] = []
    models: dict[str, Any] = {}
    timings: dict[str, list[float]] = {"train": [], "predict": []}
    folds = list(dict.fromkeys(group_of.values()))
    for fold in progress_bar(folds, enabled=progress, desc=f"cv {method}"):
        train_names = [n for n in datas if group_of[n] != fold]
        test_names = [n for n in datas if group_of[n] == fold]
        if task == "tumor":
            fold_genes = [truth_key]
            train_secs = [replace(base[n], targets=tumor_targets(tables[n], truth_key)) for n in train_names]
        elif isinstance(genes, Mapping):
            if fold not in genes:
                raise KeyError(f"`genes` has no gene list for fold {fold!r}.")
            fold_genes = list(genes[fold])
            train_secs = [replace(base[n], targets=log_expression(tables[n], fold_genes)) for n in train_names]
        elif isinstance(genes, int | np.integer):
            pool = [tables[n] for n in train_names] + [t for n, t in extra.items() if extra_group[n] != fold]
            fold_genes = select_genes(pool, n_top=int(genes), spatial_genes_kwargs=spatial_genes_kwargs)
            train_secs = [replace(base[n], targets=log_expression(tables[n], fold_genes)) for n in train_names]
        else:
            fold_genes = list(genes)
            train_secs = [replace(base[n], targets=log_expression(tables[n], fold_genes)) for n in train_names]
        model = fit_sections(
            train_secs, genes=fold_genes, task=task, method=method, features_key=features_key,
            encoder=encoder, show_progress=False, **tkw,
        )
        timings["train"].append(model.params["train_seconds"])
        logger.info("fold %s: %s trained on %s in %.1f s", fold, method, train_names, model.params["train_seconds"])
        for n in test_names:
            t0 = time.perf_counter()
            pred = model.predict_section(base[n])
            timings["predict"].append(time.perf_counter() - t0)
            sec: Section = base[n]
            if task == "tumor":
                from hist_sd.tl._segmentation import segmentation_metrics

                prob = 1.0 / (1.0 + np.exp(-pred[:, 0]))
                truth = tumor_targets(tables[n], truth_key)[:, 0]
                df = pd.DataFrame([segmentation_metrics(truth[sec.in_tissue], prob[sec.in_tissue], name=n)])
            else:
                truth = log_expression(tables[n], fold_genes)
                df = gene_scores(pred[sec.in_tissue], truth[sec.in_tissue], fold_genes)
            df.insert(0, "section", n)
            df.insert(0, "fold", fold)
            df.insert(0, "method", method)
            rows.append(df)
        if return_models:
            models[fold] = model
    scores = pd.concat(rows, ignore_index=True)
    summary = summarize(scores, metric="auc") if task == "tumor" else summarize(scores)
    summary["train_seconds_per_fold"] = float(np.mean(timings["train"]))
    summary["predict_seconds_per_section"] = float(np.mean(timings["predict"]))
    if return_models:
        return scores, summary, models
    return scores, summary
