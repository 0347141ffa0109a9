"""HiST's application module validated in three layers (no TCGA slide pixels can be had here).

1. :func:`run_synthetic`: the whole chain on synthetic cohorts made from real her2st HiST predictions, with a
   survival signal planted in one gene inside one region of the map (recovered) and a shuffled-label control
   (not recovered).
2. :func:`run_tcga_head`: the Cox head on real TCGA bulk RNA families (stand-in for pseudo-bulk) against lifelines'
   CoxPHFitter on the same input and published folds (BLCA, BRCA, LUAD).
3. :func:`run_outcome_cli`: what ``hist-sd outcome SLIDES_DIR CLINICAL.csv --model M --out DIR`` runs: whole slides
   -> features -> predicted maps -> cross-validated risk -> ``scores.csv`` + Kaplan-Meier figures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger("hist_sd")

#: Outputs of ``hist-sd outcome`` (refused when present unless ``overwrite``).
CLI_OUTPUTS: tuple[str, ...] = ("scores.csv", "folds.csv", "summary.csv", "km.png")
#: The TCGA cohorts of layer 2.
TCGA_HEAD_COHORTS: tuple[str, ...] = ("blca", "brca", "luad")
#: A small ConvNeXt-V2 for CPU benchmarks (2 cores).
SMALL_NET: dict[str, Any] = {"dims": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "hidden": 32}


# ------------------------------------------------------------------------------------------- layer 3: the CLI
def slide_files(folder: str | Path) -> list[Path]:
    """The slide files of ``folder`` (the endings :func:`hist_sd.tl.predict_slides` reads), sorted."""
    from hist_sd.tl._slides import SLIDE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"SLIDES_DIR: no such folder: {str(folder)!r}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(SLIDE_SUFFIXES))
    if not files:
        raise ValueError(f"SLIDES_DIR: {str(folder)!r} holds no slide file ({', '.join(SLIDE_SUFFIXES)}).")
    return files


def read_clinical(path: str | Path, slides: Sequence[str], *, task: str, clinical: Sequence[str],
                  response_key: str = "response", n_folds: int | None = None) -> pd.DataFrame:
    """Read and check the clinical table against the slides before any slide is processed."""
    from hist_sd.tl._outcome import _join_clinical, _response_of, survival_of

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLINICAL.csv: no such file: {str(path)!r}")
    df = pd.read_csv(path)
    if "slide_id" in df.columns:
        df["slide_id"] = df["slide_id"].astype(str).str.replace(r"\.(svs|tiff?|ndpi|mrxs|scn|bif|jpe?g|png)$", "",
                                                                regex=True)
    obs = _join_clinical(list(slides), df, "slide_id", "case_id")
    if task == "survival":
        survival_of(obs)
    else:
        _response_of(obs, response_key)
    missing = [c for c in clinical if c not in obs.columns]
    if missing:
        raise ValueError(f"--clinical: column(s) {missing} are not in CLINICAL.csv (it has {list(df.columns)}).")
    n_pat = int(obs["case_id"].nunique())
    if n_folds is not None and n_folds > n_pat:
        raise ValueError(f"--folds {n_folds}: the slides belong to only {n_pat} patients; use at most {n_pat} folds.")
    return df


def check_outcome_args(slides_dir: str | Path, clinical_csv: str | Path, model: str | Path, out: str | Path, *,
                       task: str = "survival", clinical: Sequence[str] = (), n_folds: int | None = None,
                       overwrite: bool = False) -> list[Path]:
    """Check ``hist-sd outcome``'s arguments (files, the clinical table against the slides, outputs)."""
    from hist_sd.tl._slides import slide_name

    files = slide_files(slides_dir)
    if not Path(model).is_file():
        raise FileNotFoundError(f"--model: no such file: {str(model)!r}")
    read_clinical(clinical_csv, [slide_name(p) for p in files], task=task, clinical=clinical, n_folds=n_folds)
    existing = [f for f in CLI_OUTPUTS if (Path(out) / f).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"--out: {str(out)!r} holds results already ({', '.join(existing)}); pass --overwrite.")
    return files


def _km_figures(cv: Any, out: Path) -> list[str]:
    """Pooled and per-fold Kaplan-Meier figures of the network's held-out risks (skipped with one risk group)."""
    import matplotlib

    matplotlib.use("Agg")
    from hist_sd import pl

    saved = []
    folds = sorted(cv.predictions["fold"].unique())
    for name, fold in [("km.png", None)] + [(f"km_fold{k}.png", k) for k in folds]:
        adata = cv.patients("convnext", fold)
        if adata.obs["risk_group"].nunique() < 2 or not adata.obs["event"].any():
            logger.warning("%s: one risk group (or no event) among %d patients; no Kaplan-Meier figure", name,
                           adata.n_obs)
            continue
        pl.kaplan_meier(adata, groups_key="risk_group", save=out / name, overwrite=True, at_risk=False,
                        title="pooled held-out patients" if fold is None else f"fold {fold}")
        saved.append(name)
    return saved


def run_outcome_cli(slides_dir: str | Path, clinical_csv: str | Path, model: str | Path, out: str | Path, *,
                    task: str = "survival", clinical: Sequence[str] = (), n_folds: int = 5, epochs: int = 20,
                    n_workers: int = 2, seed: int = 0, overwrite: bool = False,
                    model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Slides -> tiles, features, predicted maps (``predict_slides``) -> cross-validated outcome -> files.

    Writes ``out/slides/<slide>.zarr`` (resumable), ``out/scores.csv`` (one out-of-fold row per patient: fold,
    risk, risk group or class probabilities, outcome), ``out/folds.csv`` (metrics per method and fold),
    ``out/summary.csv`` and the Kaplan-Meier figures ``out/km.png`` (pooled) and ``out/km_fold<k>.png``, and the
    model trained on every slide, ``out/outcome_model.pt``.
    """
    from hist_sd import io, tl
    from hist_sd.tl._slides import slide_name

    t0 = time.perf_counter()
    files = check_outcome_args(slides_dir, clinical_csv, model, out, task=task, clinical=clinical, n_folds=n_folds,
                               overwrite=overwrite)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clin = read_clinical(clinical_csv, [slide_name(p) for p in files], task=task, clinical=clinical)
    table = tl.predict_slides(files, model, out=out / "slides", n_workers=n_workers, overwrite=overwrite,
                              progress=False)
    failed = table.loc[table["status"] == "failed", "slide"].tolist()
    if failed:
        raise RuntimeError(f"{len(failed)} slide(s) failed ({', '.join(failed[:5])}); see {out / 'slides' / 'slides.csv'}")
    sdatas = {s: io.read_zarr(z) for s, z in zip(table["slide"], table["zarr"], strict=True)}
    maps = tl.outcome_maps(sdatas, clin, shape=None, table_key="tiles")
    kw = dict(SMALL_NET if model_kwargs is None else model_kwargs)
    cv = tl.cross_validate_outcome(maps, task=task, clinical=list(clinical), n_folds=n_folds, epochs=epochs,
                                   seed=seed, model_kwargs=kw)
    net = cv.predictions[cv.predictions["method"] == "convnext"].drop(columns=["method"])
    net.to_csv(out / "scores.csv", index=False)
    cv.scores.to_csv(out / "folds.csv", index=False)
    cv.summary.to_csv(out / "summary.csv")
    figures = _km_figures(cv, out) if task == "survival" else []
    final = tl.train_outcome(maps, task=task, clinical=list(clinical), epochs=epochs, seed=seed, model_kwargs=kw)
    final.save(out / "outcome_model.pt", overwrite=True)
    return {"n_slides": len(maps), "n_patients": int(maps.obs["case_id"].nunique()), "summary": cv.summary,
            "figures": figures, "seconds": round(time.perf_counter() - t0, 1)}


# ------------------------------------------------------------------------------- layer 2: Cox head vs lifelines
def family_scores(cohort: Any) -> pd.DataFrame:
    """Bulk RNA family scores: per gene family, the mean of its z-scored rnaseq columns (patients x families)."""
    from hist_sd import get

    rna = get.genomics(cohort, omic="rnaseq")
    z = (rna - rna.mean()) / rna.std(ddof=0).replace(0, 1.0)
    out = {}
    for fam, cols in get.families(cohort).items():
        cols = [c for c in cols if c in z.columns]
        if cols:
            out[fam] = z[cols].mean(axis=1)
    if not out:
        raise ValueError(f"cohort {cohort.name!r} has no rnaseq column in a gene family.")
    return pd.DataFrame(out)


def run_tcga_head(cohorts: Sequence[str] = TCGA_HEAD_COHORTS, *, data_dir: str | None = None,
                  penalizer: float = 0.1) -> pd.DataFrame:
    """The linear Cox head (gradient, :func:`~hist_sd.nn.cox_ph_loss`) against lifelines on the same folds.

    Input: bulk RNA family scores (:func:`family_scores`, standardised on each training fold). Both fit the same
    penalised Efron partial likelihood on the training patients; Harrell's C-index is computed on the held-out
    patients of each published fold. Also reports the two-layer (GELU) head trained with AdamW for 200 steps.
    """
    import torch
    from lifelines import CoxPHFitter

    from hist_sd import datasets
    from hist_sd._core._survival import harrell_c
    from hist_sd.train._outcome import fit_cox_head

    rows = []
    for name in cohorts:
        cohort = datasets.tcga(name, data_dir=data_dir)
        x_all = family_scores(cohort)
        surv = cohort.patients.obs
        for k in range(cohort.n_folds):
            tr, te = cohort.fold(k)
            x_tr, x_te = x_all.loc[tr].to_numpy(np.float64), x_all.loc[te].to_numpy(np.float64)
            t_tr, e_tr = surv.loc[tr, "survival_months"].to_numpy(float), surv.loc[tr, "event"].to_numpy(bool)
            t_te, e_te = surv.loc[te, "survival_months"].to_numpy(float), surv.loc[te, "event"].to_numpy(bool)
            t0 = time.perf_counter()
            head, mu, sd = fit_cox_head(x_tr, t_tr, e_tr, penalizer=penalizer)
            with torch.no_grad():
                r_head = head(torch.from_numpy((x_te - mu) / sd))["logits"][:, 0].numpy()
            s_head = time.perf_counter() - t0
            mlp, mu2, sd2 = fit_cox_head(x_tr, t_tr, e_tr, penalizer=penalizer, hidden=32, epochs=200)
            with torch.no_grad():
                r_mlp = mlp(torch.from_numpy((x_te - mu2) / sd2))["logits"][:, 0].numpy()
            df = pd.DataFrame((x_tr - mu) / sd, columns=list(x_all.columns))
            df["time"], df["event"] = t_tr, e_tr.astype(int)
            t0 = time.perf_counter()
            cph = CoxPHFitter(penalizer=penalizer).fit(df, "time", "event")
            s_ll = time.perf_counter() - t0
            r_ll = ((x_te - mu) / sd) @ cph.params_[list(x_all.columns)].to_numpy()
            w = head.layers[0].weight.detach().numpy().ravel()
            rows.append({"cohort": name, "fold": k, "n_train": len(tr), "n_test": len(te), "n_events_test": int(e_te.sum()),
                         "c_index_head": harrell_c(t_te, e_te, r_head), "c_index_lifelines": harrell_c(t_te, e_te, r_ll),
                         "c_index_mlp_head": harrell_c(t_te, e_te, r_mlp),
                         "max_abs_coef_diff": float(np.abs(w - cph.params_.to_numpy()).max()),
                         "head_seconds": round(s_head, 3), "lifelines_seconds": round(s_ll, 3)})
            rows[-1]["abs_diff"] = abs(rows[-1]["c_index_head"] - rows[-1]["c_index_lifelines"])
            logger.warning("%s fold %d: C head %.4f, lifelines %.4f, 2-layer head %.4f", name, k,
                           rows[-1]["c_index_head"], rows[-1]["c_index_lifelines"], rows[-1]["c_index_mlp_head"])
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- layer 1: synthetic cohorts
def her2st_predictions(out: Path, *, data_dir: str | None = None, n_genes: int = 50, epochs: int = 30,
                       seed: int = 0) -> dict[str, Any]:
    """HiST trained on the six her2st image sections (fixed epochs), predicting each of them: tile-like tables.

    The model is saved to ``out/hist_her2st.pt``. Returns section -> AnnData with the predictions in ``obsm["hist_pred"]`` (and ``uns["hist_pred"]["genes"]``).
    """
    import warnings

    import anndata as ad

    from hist_sd import datasets, tl
    from hist_sd._bench import HER2ST_IMAGE_SECTIONS, with_features
    from hist_sd._core._data import get_table
    from hist_sd._core._warnings import TooFewGenesWarning
    from hist_sd.tl._cv import select_genes

    cached = out / f"her2st_pred_{n_genes}g_{epochs}ep_s{seed}"
    if cached.is_dir() and (out / "hist_her2st.pt").is_file():  # predictions of an earlier run with these settings
        return {s: ad.read_h5ad(cached / f"{s}.h5ad") for s in HER2ST_IMAGE_SECTIONS}
    sdatas = datasets.her2st(list(HER2ST_IMAGE_SECTIONS), data_dir=data_dir, images_only=True)
    with_features(sdatas, cache=out / "cache")
    tables = {n: get_table(s) for n, s in sdatas.items()}
    genes = select_genes(list(tables.values()), n_top=n_genes)
    model = tl.train(tables, genes=genes, epochs=epochs, seed=seed, progress=False)
    model.save(out / "hist_her2st.pt", overwrite=True)
    for table in tables.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TooFewGenesWarning)
            tl.predict(table, model, overwrite=True)
    cached.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        slim = ad.AnnData(obs=table.obs[["array_row", "array_col", "in_tissue"]].copy(),
                          obsm={"hist_pred": np.asarray(table.obsm["hist_pred"])},
                          uns={"hist_pred": {"genes": list(table.uns["hist_pred"]["genes"])},
                               "hist_sd": {"technology": str(table.uns["hist_sd"]["technology"])}})
        slim.write_h5ad(cached / f"{name}.h5ad")
    return tables


def synthetic_cohort(tables: dict[str, Any], *, n_patients: int = 120, second_slide: float = 0.25,
                     gene: int = 0, effect: float = 1.0, beta: float = 1.0, seed: int = 0
                     ) -> tuple[Any, dict[str, Any]]:
    """Synthetic patients from real predicted maps with a survival signal planted in one gene in one region.

    Each slide is one her2st section's predicted maps (own grid), randomly flipped, with mild noise. A patient's
    latent ``z ~ N(0, 1)`` shifts ``gene`` by ``effect * z`` (in units of that gene's standard deviation) in the
    known region (the top-left quarter of the tissue's bounding box); the hazard is ``exp(beta * z)``
    (exponential times, uniform censoring, ~70% events). Some patients get a second slide (same ``z``).
    """
    from hist_sd import tl

    rng = np.random.default_rng(seed)
    base = tl.outcome_maps(tables, shape=None, features_key=None)
    sd_g = float(np.concatenate([a[gene][m] for a, m in zip(base.maps, base.masks, strict=True)]).std())
    z = rng.normal(size=n_patients)
    t_event = rng.exponential(12.0 * np.exp(-beta * z))
    t_cens = rng.uniform(0, 50.0, size=n_patients)
    names, maps, masks, rows = [], [], [], []
    for p in range(n_patients):
        for s in range(1 + int(rng.random() < second_slide)):
            i = int(rng.integers(len(base)))
            a, m = base.maps[i].copy(), base.masks[i].copy()
            rr, cc = np.nonzero(m)
            region = np.zeros_like(m)
            region[rr.min(): (rr.min() + rr.max()) // 2 + 1, cc.min(): (cc.min() + cc.max()) // 2 + 1] = True
            a[gene][region & m] += effect * z[p] * sd_g
            a += rng.normal(scale=0.1 * sd_g, size=a.shape).astype(np.float32)
            if rng.random() < 0.5:
                a, m = a[:, ::-1].copy(), m[::-1].copy()
            if rng.random() < 0.5:
                a, m = a[:, :, ::-1].copy(), m[:, ::-1].copy()
            a[:, ~m] = 0.0
            names.append(f"P{p:03d}_S{s}")
            maps.append(a.astype(np.float32))
            masks.append(m)
            rows.append({"case_id": f"P{p:03d}", "survival_months": float(min(t_event[p], t_cens[p])),
                         "event": int(t_event[p] <= t_cens[p]), "z": float(z[p]), "source": base.names[i]})
    obs = pd.DataFrame(rows, index=pd.Index(names, name="slide_id"))
    cohort = tl.OutcomeMaps(names, list(base.genes), maps, masks, obs)
    return cohort, {"gene": base.genes[gene], "effect": effect, "beta": beta}


def run_synthetic(out: Path, *, data_dir: str | None = None, n_patients: int = 300, epochs: int = 15,
                  hist_epochs: int = 30, seed: int = 0) -> pd.DataFrame:
    """Layer 1: planted signal recovered by the module (and its baselines); a shuffled-label control is not."""
    from hist_sd import tl

    out = Path(out)
    t0 = time.perf_counter()
    tables = her2st_predictions(out, data_dir=data_dir, epochs=hist_epochs, seed=seed)
    t_pred = time.perf_counter() - t0
    cohort, planted = synthetic_cohort(tables, n_patients=n_patients, seed=seed)
    rows = []
    for label in ("planted", "shuffled"):
        data = cohort
        if label == "shuffled":  # permute the outcomes across patients: no signal left
            data = cohort.subset(cohort.names)
            pat = data.obs.drop_duplicates("case_id")[["case_id", "survival_months", "event"]]
            perm = np.random.default_rng(seed + 1).permutation(len(pat))
            new = pat.assign(survival_months=pat["survival_months"].to_numpy()[perm],
                             event=pat["event"].to_numpy()[perm]).set_index("case_id")
            data.obs["survival_months"] = new.loc[data.obs["case_id"], "survival_months"].to_numpy()
            data.obs["event"] = new.loc[data.obs["case_id"], "event"].to_numpy()
        t1 = time.perf_counter()
        cv = tl.cross_validate_outcome(data, epochs=epochs, seed=seed, model_kwargs=SMALL_NET)
        p = cv.predictions[cv.predictions["method"] == "convnext"].set_index("case_id")
        z = data.obs.drop_duplicates("case_id").set_index("case_id")["z"]
        corr = float(np.corrcoef(p["risk"], z.loc[p.index])[0, 1])
        for method, row in cv.summary.iterrows():
            rows.append({"labels": label, "method": method, **row.to_dict(),
                         "risk_z_corr": corr if method == "convnext" else float("nan"),
                         "cv_seconds": round(time.perf_counter() - t1, 1)})
        logger.warning("synthetic %s: %s", label, cv.summary[["c_index_mean", "pooled_c_index"]].round(3).to_dict())
    table = pd.DataFrame(rows)
    table.attrs.update({"planted": planted, "n_patients": n_patients, "n_slides": len(cohort),
                        "hist_predict_seconds": round(t_pred, 1), "total_seconds": round(time.perf_counter() - t0, 1)})
    return table


def run_cli_layer(out: Path, *, model: str | Path, svs: str | Path, n_copies: int = 6, epochs: int = 5,
                  n_folds: int = 3, n_workers: int = 2, seed: int = 0) -> dict[str, Any]:
    """Layer 3: ``hist-sd outcome`` on the real SVS repeated as a toy cohort (``n_copies`` patients).

    The copies have identical pixels, so their maps are identical: the run checks the chain and its cost, not a
    prognostic value (the toy survival times are random; a clinical ``stage`` column separates the risks).
    """
    import os

    out = Path(out)
    slides = out / "toy_slides"
    slides.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_copies):
        link = slides / f"toy{i}.svs"
        if not link.exists():
            os.symlink(Path(svs).resolve(), link)
    stage = np.array(["I", "II", "III"])[np.arange(n_copies) % 3]
    clin = pd.DataFrame({"slide_id": [f"toy{i}" for i in range(n_copies)], "case_id": [f"T{i}" for i in range(n_copies)],
                         "survival_months": rng.uniform(3, 60, n_copies).round(1),
                         "event": (np.arange(n_copies) % 3 != 2).astype(int), "stage": stage})
    clin.to_csv(out / "toy_clinical.csv", index=False)
    res = run_outcome_cli(slides, out / "toy_clinical.csv", model, out / "cli", clinical=["stage"], n_folds=n_folds,
                          epochs=epochs, n_workers=n_workers, seed=seed, overwrite=True)
    table = pd.read_csv(out / "cli" / "slides" / "slides.csv")
    res["slide_seconds"] = table["seconds"].tolist()
    res["n_tiles"] = table["n_tiles"].tolist()
    return res
