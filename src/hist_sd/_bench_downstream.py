"""Downstream biology on predicted expression, validated against measured expression (her2st, leave-one-patient-out).

Used by ``benchmarks/downstream.py``. For each her2st patient with H&E images (B: B4; C: C2-C6) a HiST model is
trained on the *other* patient's image sections, with ``n_genes`` spatially variable genes selected on the other
patients' sections only (image and count-only ones), and predicts the held-out sections. On each held-out
section, every downstream verb runs twice, on the prediction (``key="hist_pred"``) and on the measured expression of
the same genes (``key=None, genes=...``), and the two results are compared:

* pseudo-bulk: Pearson / Spearman across genes of the predicted vs measured section mean, beside the training-mean
  baseline (the model's ``target_mean``), and the Pearson of both profiles' deviations from that baseline;
* CNV: Pearson of per-spot CNV scores, and of the chromosome-arm profile (mean over tumour spots); the predicted
  arm profile is also compared with the measured one of the *training* sections' tumours, to see whose copy-number
  pattern a prediction carries;
* heterogeneity: adjusted Rand index of tumour sub-clusters, beside spatially smoothed random labels;
* enrichment: Jaccard and the recovered share of significant (adjusted p < 0.05, score > 0) hallmark / GO-BP
  terms of tumour vs non-tumour spots, ORA on differentially expressed genes and ULM, beside the share a random
  set of as many tested terms recovers (``*_recovered_chance``).

Tumour spots and the CNV reference (non-tumour spots) come from :func:`hist_sd.tl.tumor_labels` on the held-out
section's measured counts, and are the same for both sides: the comparisons isolate the expression.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hist_sd import _constants as C
from hist_sd._bench import HER2ST_IMAGE_SECTIONS, markdown, peak_rss_mib, with_features

logger = logging.getLogger("hist_sd")

#: Gene selection of every fold, fixed in advance: top spatially variable genes by median Moran's I over the
#: training patients' sections, significant in half of them and detected in >= 5% of spots of each (HiST's
#: all-sections rule keeps ~150 genes on 24 legacy ST sections).
GENE_RULE: dict[str, float] = {"min_sections": 0.5, "min_cells": 0.05}
#: Enrichment collections compared.
SOURCES: tuple[str, ...] = ("hallmarks", "go_bp")
#: Significance of an enrichment term.
ALPHA = 0.05


def run_downstream(out: Path, *, data_dir: str | None = None, n_genes: int = 1200, epochs: int = 100,
                   seed: int = 0, n_random: int = 20, progress: bool = False) -> dict[str, pd.DataFrame]:
    """Run the validation and write ``out/downstream.csv``, ``out/costs.csv`` and ``out/downstream.md``.

    ``downstream.csv`` has one row per held-out section; returns ``{"sections", "summary", "costs"}`` DataFrames.

    Long: one loop over the two folds, each a short sequence of library calls.
    """
    import torch

    from hist_sd import datasets, tl
    from hist_sd._core._data import get_table
    from hist_sd.tl._cv import select_genes

    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    sdatas = datasets.her2st(list(HER2ST_IMAGE_SECTIONS), data_dir=data_dir, images_only=True, scale_factors=None)
    with_features(sdatas, cache=out / "cache", progress=progress)
    counts = datasets.her2st(None, data_dir=data_dir, images_only=False, labels=False, scale_factors=None)
    positions = datasets.gene_positions(data_dir=data_dir)
    rows, costs = [], []
    for patient in dict.fromkeys(s[0] for s in HER2ST_IMAGE_SECTIONS):
        train = {n: s for n, s in sdatas.items() if n[0] != patient}
        test = [n for n in sdatas if n[0] == patient]
        t0 = time.perf_counter()
        genes = select_genes([get_table(s) for n, s in counts.items() if n[0] != patient], n_top=n_genes,
                             spatial_genes_kwargs=GENE_RULE)
        select_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = tl.train(train, genes=genes, epochs=epochs, seed=seed, progress=progress)
        train_s = time.perf_counter() - t0
        n_params = sum(p.numel() for p in model.net.parameters())
        train_arms = _measured_arms([get_table(s) for s in train.values()], genes, positions)
        for name in test:
            table = get_table(sdatas[name])
            t0 = time.perf_counter()
            tl.predict(table, model)
            predict_s = time.perf_counter() - t0
            row = {"held_out_patient": patient, "section": name, "train_sections": "+".join(train),
                   "n_genes": len(genes), "n_spots": table.n_obs}
            row.update(_validate(table, model, genes, positions, train_arms, seed=seed, n_random=n_random))
            rows.append(row)
            costs.append({"section": name, "n_genes": len(genes), "epochs": epochs, "n_params": n_params,
                          "gene_selection_s": select_s, "train_s": train_s, "predict_s": predict_s,
                          "peak_rss_mib": peak_rss_mib()})
            logger.warning("%s: bulk r %.3f (baseline %.3f), CNV score r %.3f, ARI %.3f (random %.3f)", name,
                           row["bulk_pearson"], row["bulk_baseline_pearson"], row["cnv_score_pearson"],
                           row["subcluster_ari"], row["subcluster_ari_random"])
    sections = pd.DataFrame(rows)
    summary = sections.drop(columns=["held_out_patient", "section", "train_sections"]).mean(numeric_only=True)
    summary = summary.to_frame("mean_over_sections")
    cost = pd.DataFrame(costs)
    cost.attrs["total_seconds"] = time.perf_counter() - t_all
    sections.to_csv(out / "downstream.csv", index=False)
    cost.to_csv(out / "costs.csv", index=False)
    (out / "downstream.md").write_text(format_downstream(sections, cost) + "\n")
    return {"sections": sections, "summary": summary, "costs": cost}


def _validate(table: Any, model: Any, genes: list[str], positions: pd.DataFrame, train_arms: pd.Series, *,
              seed: int, n_random: int) -> dict[str, float]:
    """Every downstream verb on the prediction and on the measured expression of one held-out section."""
    from hist_sd import tl

    out: dict[str, float] = {}
    scores = tl.evaluate(table, pred_key=C.PRED)
    out["spot_mean_pearson"] = float(scores["pearson"].mean())
    # pseudo-bulk
    pred_bulk = tl.pseudobulk(table)
    meas_bulk = tl.pseudobulk(table, key=None, genes=genes)
    bulk = tl.evaluate_bulk(pred_bulk, meas_bulk, baseline=model).iloc[0]
    out.update(bulk_pearson=bulk["pearson"], bulk_spearman=bulk["spearman"],
               bulk_baseline_pearson=bulk["baseline_pearson"], bulk_baseline_spearman=bulk["baseline_spearman"],
               bulk_pearson_delta=bulk["pearson_delta"])
    # tumour spots / CNV reference from the measured counts, shared by both sides
    tl.tumor_labels(table, gene_positions=positions, overwrite=True)
    tumour = table.obs[C.TUMOR].to_numpy(dtype=bool)
    out["tumor_fraction"] = float(tumour.mean())
    out.update(_cnv(table, genes, positions, tumour, train_arms))
    out.update(_heterogeneity(table, genes, tumour, seed=seed, n_random=n_random))
    out.update(_enrichment(table, genes))
    return out


def _measured_arms(tables: list[Any], genes: list[str], positions: pd.DataFrame) -> pd.Series:
    """Mean measured chromosome-arm CNV profile of the tumour spots of the training sections (same genes)."""
    from hist_sd import tl

    profiles = []
    for table in tables:
        tl.tumor_labels(table, gene_positions=positions, overwrite=True)
        tl.cnv(table, key=None, genes=genes, gene_positions=positions, key_added="cnv_meas", overwrite=True)
        profiles.append(table.obsm["cnv_meas_arms"][table.obs[C.TUMOR].to_numpy(dtype=bool)].mean(axis=0))
    return pd.concat(profiles, axis=1).mean(axis=1)


def _cnv(table: Any, genes: list[str], positions: pd.DataFrame, tumour: np.ndarray,
         train_arms: pd.Series) -> dict[str, float]:
    """Per-spot scores and the tumour's arm profile, predicted vs measured; and both against the training tumours."""
    from hist_sd import tl

    tl.cnv(table, gene_positions=positions, key_added="cnv_pred", overwrite=True)
    tl.cnv(table, key=None, genes=genes, gene_positions=positions, key_added="cnv_meas", overwrite=True)
    score_r = _pearson(table.obs["cnv_pred_score"], table.obs["cnv_meas_score"])
    arms_p = table.obsm["cnv_pred_arms"][tumour].mean(axis=0)
    arms_m = table.obsm["cnv_meas_arms"][tumour].mean(axis=0)
    shared = arms_p.index.intersection(arms_m.index)
    train = train_arms.reindex(shared)
    return {"cnv_score_pearson": score_r, "cnv_arm_pearson": _pearson(arms_p[shared], arms_m[shared]),
            "cnv_arm_pearson_pred_vs_train": _pearson(arms_p[shared], train),
            "cnv_arm_pearson_meas_vs_train": _pearson(arms_m[shared], train), "cnv_n_arms": float(len(shared))}


def _heterogeneity(table: Any, genes: list[str], tumour: np.ndarray, *, seed: int,
                   n_random: int) -> dict[str, float]:
    from sklearn.metrics import adjusted_rand_score

    from hist_sd import tl
    from hist_sd.tl._tumor import _neighbours

    tl.heterogeneity(table, tumor_key=C.TUMOR, key_added="sub_pred", seed=seed, overwrite=True)
    tl.heterogeneity(table, key=None, genes=genes, tumor_key=C.TUMOR, key_added="sub_meas", seed=seed,
                     overwrite=True)
    pred = table.obs["sub_pred"][tumour].astype(str).to_numpy()
    meas = table.obs["sub_meas"][tumour].astype(str).to_numpy()
    near = _neighbours(table, "auto")
    k = len(set(meas))
    rng = np.random.default_rng(seed)
    random = [adjusted_rand_score(meas, smoothed_random_labels(near, k, rng)[tumour]) for _ in range(n_random)]
    return {"subcluster_ari": float(adjusted_rand_score(pred, meas)), "subcluster_ari_random": float(np.mean(random)),
            "n_subclusters_pred": float(len(set(pred))), "n_subclusters_meas": float(k)}


def smoothed_random_labels(neighbours: list[np.ndarray], k: int, rng: np.random.Generator,
                           n_iter: int = 3) -> np.ndarray:
    """``k`` random labels per spot, replaced ``n_iter`` times by the most frequent label of the spot's neighbourhood.

    A baseline with spatially coherent patches (like real sub-clusters) but no biology.
    """
    labels = rng.integers(k, size=len(neighbours))
    for _ in range(n_iter):
        labels = np.array([np.bincount(labels[n], minlength=k).argmax() for n in neighbours])
    return labels


def _enrichment(table: Any, genes: list[str]) -> dict[str, float]:
    from hist_sd import tl

    table.obs["_tumour_group"] = pd.Categorical(np.where(table.obs[C.TUMOR], "tumour", "other"))
    out: dict[str, float] = {}
    try:
        for source in SOURCES:
            pred = tl.enrichment(table, groupby="_tumour_group", source=source, key_added=f"enr_pred_{source}",
                                 overwrite=True)
            meas = tl.enrichment(table, groupby="_tumour_group", key=None, genes=genes, source=source,
                                 key_added=f"enr_meas_{source}", overwrite=True)
            for method in ("ora", "ulm"):
                p, m = _significant(pred, method), _significant(meas, method)
                union = p | m
                out[f"{source}_{method}_jaccard"] = len(p & m) / len(union) if union else float("nan")
                out[f"{source}_{method}_recovered"] = len(p & m) / len(m) if m else float("nan")
                out[f"{source}_{method}_n_measured"] = float(len(m))
                out[f"{source}_{method}_n_predicted"] = float(len(p))
                # a random set of len(p) of the tested (group, term) pairs recovers this share on average
                n_tests = int((pred["method"] == method).sum())
                out[f"{source}_{method}_recovered_chance"] = len(p) / n_tests if n_tests else float("nan")
    finally:
        del table.obs["_tumour_group"]
    return out


def _significant(df: pd.DataFrame, method: str) -> set[tuple[str, str]]:
    sel = df[(df["method"] == method) & (df["padj"] < ALPHA) & (df["score"] > 0)]
    return set(zip(sel["group"], sel["term"], strict=True))


def _pearson(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


#: Columns of the README table.
TABLE_COLUMNS: tuple[str, ...] = (
    "section", "spot_mean_pearson", "bulk_pearson", "bulk_baseline_pearson", "bulk_pearson_delta",
    "cnv_score_pearson", "cnv_arm_pearson", "cnv_arm_pearson_pred_vs_train", "subcluster_ari", "subcluster_ari_random",
    "hallmarks_ulm_jaccard", "hallmarks_ulm_recovered", "hallmarks_ulm_recovered_chance", "go_bp_ulm_jaccard",
    "go_bp_ulm_recovered", "go_bp_ulm_recovered_chance", "go_bp_ora_jaccard", "go_bp_ora_recovered",
)


def format_downstream(sections: pd.DataFrame, costs: pd.DataFrame) -> str:
    """The validation table (one row per held-out section and their mean) and the costs, as Markdown."""
    cols = [c for c in TABLE_COLUMNS if c in sections.columns]
    table = sections[cols].copy()
    mean = table.drop(columns="section").mean(numeric_only=True)
    table = pd.concat([table, pd.DataFrame([{"section": "mean", **mean.to_dict()}])], ignore_index=True)
    cost_cols = ["section", "n_genes", "epochs", "n_params", "gene_selection_s", "train_s", "predict_s", "peak_rss_mib"]
    return markdown(table) + "\n\n" + markdown(costs[[c for c in cost_cols if c in costs.columns]])

