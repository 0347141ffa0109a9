"""The main job and the her2st / mouse olfactory bulb benchmark (used by ``hist-sd`` and ``benchmarks/``)."""

from __future__ import annotations

import json
import logging
import os
import resource
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hist_sd import _constants as C
from hist_sd._bench_tumor import pathologist_truth
from hist_sd._core._warnings import TooFewGenesWarning

logger = logging.getLogger("hist_sd")

HER2ST_IMAGE_SECTIONS: tuple[str, ...] = ("B4", "C2", "C3", "C4", "C5", "C6")
#: The main job's arguments as ``hist-sd main`` spells them, for its error messages.
MAIN_FLAGS: dict[str, str] = {"held_out": "--held-out", "n_genes": "--genes", "epochs": "--epochs",
                              "overwrite": "--overwrite"}


def expression_methods() -> tuple[str, ...]:
    """Every registered method that predicts expression, in registration order (the benchmark's default)."""
    from hist_sd.model import METHODS, get_task

    return tuple(name for name, spec in METHODS.items() if spec.supports(get_task("expression")))


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB.

    Read from ``VmHWM`` (reset when a process execs, so a spawned worker reports its own peak); ``ru_maxrss``
    where ``/proc`` is missing (it survives ``exec`` on Linux and would report the parent's peak).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


#: The input of the benchmark's main comparison and of the main job: the best configuration measured on the
#: her2st and mouse olfactory bulb benchmark (README, "Levers"); ``hs.pp.features`` options.
MAIN_FEATURES: dict[str, Any] = {"encoder": "efficientnet-lite0"}


def feature_tag(features: Mapping[str, Any]) -> str:
    """A file-name tag of ``hs.pp.features`` options: ``efficientnet-lite2``, ``..._p100-200-400``, ``..._v4``."""
    tag = str(features.get("encoder", "efficientnet-lite0"))
    sizes = features.get("patch_um")
    if sizes is not None:
        tag += "_p" + "-".join(f"{float(v):g}" for v in np.atleast_1d(sizes))
    if int(features.get("views", 1)) != 1:
        tag += f"_v{int(features['views'])}"
    return tag


def _plain_json(value: Any) -> Any:
    """NumPy arrays and scalars (also nested, e.g. the ``blocks`` of multi-scale features) as JSON values."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def with_features(sdatas: dict[str, Any], *, encoder: str = "efficientnet-lite0", cache: Path | None = None,
                  progress: bool = False, key: str = C.FEATURES,
                  features: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Compute (or load cached) features for every section; returns seconds per section.

    ``features``: options of ``hs.pp.features`` (``encoder``, ``patch_um``, ``views``; ``encoder`` overrides the
    argument of that name). The cache holds one file per section and option set (:func:`feature_tag`).
    """
    from hist_sd import pp
    from hist_sd._core._data import get_table

    options = {"encoder": encoder, **dict(features or {})}
    tag = feature_tag(options)
    seconds = {}
    for name, sdata in sdatas.items():
        table = get_table(sdata)
        f = cache / f"{name}_{tag}.npz" if cache else None
        t0 = time.perf_counter()
        if f is not None and f.exists():
            z = np.load(f, allow_pickle=False)
            if z["obs_names"].tolist() == table.obs_names.tolist() and "params" in z:
                table.obsm[key] = z["features"]
                table.uns[key] = {"params": json.loads(str(z["params"]))}  # the record hs.pp.features wrote
                seconds[name] = float(z["seconds"])
                continue
        pp.features(sdata, **options, key_added=key, progress=progress, overwrite=key in table.obsm)
        seconds[name] = time.perf_counter() - t0
        if f is not None:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_name(f".{f.name}.tmp.npz")
            params = json.dumps(dict(table.uns[key]["params"]), default=_plain_json)
            np.savez(tmp, features=table.obsm[key], obs_names=np.asarray(table.obs_names, dtype=str),
                     seconds=seconds[name], params=params)
            os.replace(tmp, f)
    return seconds


def check_main_args(out: Path, *, held_out: str, n_genes: int, epochs: int | None, overwrite: bool = False,
                    flags: bool = False) -> None:
    """Check the main job's arguments before any data is read (:func:`run_main` calls it first).

    Raises :class:`ValueError` for a ``held_out`` section without an H&E image or a count out of range, and
    :class:`FileExistsError` when ``out`` holds results already and ``overwrite`` is off. With ``flags``, the
    messages name the options of ``hist-sd main`` (``--held-out``) instead of the parameters (```held_out```).
    """
    from hist_sd.datasets._her2st import HER2ST_SECTIONS

    def name(param: str) -> str:
        return MAIN_FLAGS[param] if flags else f"`{param}`"

    with_image = ", ".join(HER2ST_IMAGE_SECTIONS)
    if held_out not in HER2ST_SECTIONS:
        raise ValueError(f"{name('held_out')}: {held_out!r} is not a her2st section; sections with an H&E image: "
                         f"{with_image}.")
    if held_out not in HER2ST_IMAGE_SECTIONS:
        raise ValueError(f"{name('held_out')}: her2st section {held_out!r} has no H&E image to predict from "
                         f"(counts only); sections with an H&E image: {with_image}.")
    counts = {"n_genes": n_genes} if epochs is None else {"n_genes": n_genes, "epochs": epochs}
    for param, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name(param)}: expected an integer of at least 1, got {value!r}.")
    if not overwrite:
        for path in (Path(out) / f"{held_out}.zarr", Path(out) / "hist_model.pt"):
            if path.exists():
                how = MAIN_FLAGS["overwrite"] if flags else "`overwrite=True`"
                raise FileExistsError(f"{path} exists already; pass {how} to replace it.")


def run_main(out: Path, *, data_dir: str | None = None, held_out: str = "B4", n_genes: int = 50,
             epochs: int | None = None, seed: int = 0, overwrite: bool = False,
             progress: bool = True) -> dict[str, Any]:
    """Train HiST on the her2st image sections of the other patients, predict ``held_out``, write results.

    Writes ``out/<held_out>.zarr`` (SpatialData with predictions in the table), ``out/hist_model.pt``,
    ``out/scores.csv`` and ``out/figures/*.png``; returns a summary dict. The arguments are checked before
    any data is read (:func:`check_main_args`).
    """
    check_main_args(out, held_out=held_out, n_genes=n_genes, epochs=epochs, overwrite=overwrite)
    import matplotlib

    matplotlib.use("Agg")
    from hist_sd import datasets, io, pl, tl
    from hist_sd._core._data import get_table
    from hist_sd.tl._cv import select_genes

    out = Path(out)
    zpath = out / f"{held_out}.zarr"
    mpath = out / "hist_model.pt"
    t_start = time.perf_counter()
    patient = held_out[0]
    train_names = [s for s in HER2ST_IMAGE_SECTIONS if s[0] != patient]
    sdatas = datasets.her2st([*train_names, held_out], data_dir=data_dir, images_only=True)
    logger.info("computing features for %d sections", len(sdatas))
    with_features(sdatas, cache=out / "cache", progress=progress, features=MAIN_FEATURES)
    # genes: top spatially variable genes of the training patients' sections (image and count-only ones)
    all_counts = datasets.her2st(None, data_dir=data_dir, images_only=False, labels=False, scale_factors=None)
    pool = [get_table(s) for n, s in all_counts.items() if n[0] != patient]
    genes = select_genes(pool, n_top=n_genes)
    logger.info("selected %d genes on %d training-patient sections", len(genes), len(pool))
    model = tl.train({n: sdatas[n] for n in train_names}, genes=genes, epochs=epochs, seed=seed, progress=progress)
    model.save(mpath, overwrite=overwrite)
    test = sdatas[held_out]
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # a 50-gene table is meant for spatial statistics here, not CNV inference
        warnings.simplefilter("ignore", TooFewGenesWarning)
        tl.predict(test, model, table_added=C.PRED, overwrite=overwrite)
    predict_s = time.perf_counter() - t0
    scores = tl.evaluate(test, pred_key=C.PRED)
    summary = tl.summarize_scores(scores)
    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "scores.csv", index=False)
    best = scores.dropna().sort_values("pearson", ascending=False)["gene"].head(4).tolist()
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    pl.predicted_vs_measured(test, best, pred_key=C.PRED, save=figs / f"{held_out}_best_genes.png", overwrite=True,
                             title=f"{held_out}: the {len(best)} genes with the highest Pearson r (of {len(scores)})")
    io.write_zarr(test, zpath, overwrite=overwrite)
    result = {"held_out": held_out, "seed": seed, "peak_rss_mib": round(peak_rss_mib()),
              "train_sections": train_names, "n_genes": len(genes),
              "mean_pearson": summary["mean"], "ci95": [summary["ci_low"], summary["ci_high"]],
              "median_pearson": summary["median"], "genes_r_gt_0.3": int(summary["n_above"]),
              "predict_seconds": predict_s, "total_seconds": time.perf_counter() - t_start,
              "best_genes": best, "zarr": str(zpath), "model": str(mpath)}
    return result


def _sections_for(dataset: str, data_dir: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    from hist_sd import datasets

    if dataset == "her2st":
        sdatas = datasets.her2st(list(HER2ST_IMAGE_SECTIONS), data_dir=data_dir)
        counts = datasets.her2st(None, data_dir=data_dir, labels=False, scale_factors=None)
        extra = {n: s for n, s in counts.items() if n not in sdatas}
        return sdatas, extra
    if dataset == "mob":
        return datasets.mob(data_dir=data_dir), {}
    raise ValueError(f"Unknown dataset {dataset!r}.")


def _fold_genes(tables: dict[str, Any], extra: dict[str, Any], protocol: str, n_genes: int) -> dict[str, list[str]]:
    """Top spatially variable genes of every fold, selected on that fold's training sections only."""
    from hist_sd.tl._cv import _group_of, select_genes

    groups = "patient" if protocol == "lopo" else "section"
    group_of = {n: _group_of(n, t, groups) for n, t in tables.items()}
    extra_group = {n: _group_of(n, t, groups) for n, t in extra.items()}
    out = {}
    for fold in dict.fromkeys(group_of.values()):
        pool = [t for n, t in tables.items() if group_of[n] != fold] + [t for n, t in extra.items() if extra_group[n] != fold]
        out[fold] = select_genes(pool, n_top=n_genes)
    return out


#: Levers, each one change away from the main configuration (:data:`MAIN_FEATURES` and HiST's defaults):
#: name -> (change of the ``hs.pp.features`` options, change of ``hs.tl.train``'s options). Run on her2st
#: leave-one-patient-out, HiST and (for a change of input) PCA + ridge, in the same run as the main comparison.
LEVERS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "encoder efficientnet-lite2": ({"encoder": "efficientnet-lite2"}, {}),
    "multi-scale 100+200+400 um": ({"patch_um": (100.0, 200.0, 400.0)}, {}),
    "2 test-time views": ({"views": 2}, {}),
    "no per-spot skip": ({}, {"model_kwargs": {"spot_skip": False}}),
}
#: Methods run only where a cross-validation is cheap (her2st leave-one-patient-out, mouse olfactory bulb): the
#: architecture ablations, whose leave-one-section-out runs cost most of the benchmark's time.
CHEAP_ONLY: tuple[str, ...] = ("hist_noattn", "hist_noconvmixer")


def _cv_job(job: dict[str, Any]) -> dict[str, Any]:
    """One cross-validation of the benchmark, expression or tumour (``job["kind"]``), in a worker process."""
    import torch

    from hist_sd import tl

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    groups = "patient" if job["protocol"] == "lopo" else "section"
    if job["kind"] == "tumor":
        res = tl.cross_validate(job["tables"], groups=groups, task="tumor", method=job["method"],
                                train_kwargs=job["train_kwargs"], progress=False)
    else:
        res = tl.cross_validate(job["tables"], groups=groups, method=job["method"], genes=job["genes"],
                                train_kwargs=job["train_kwargs"], progress=False)
    return {"scores": res.scores, "summary": res.summary, "seconds": time.perf_counter() - t0, "peak_rss_mib": peak_rss_mib()}


def _lever_jobs(sdatas: dict[str, Any], genes: dict[str, list[str]], *, cache: Path, epochs: int | None,
                levers: Sequence[str], progress: bool) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The cross-validations of the levers (her2st leave-one-patient-out); features computed or read from ``cache``."""
    from hist_sd._core._data import get_table

    jobs, seconds = [], {}
    for lever in levers:
        feature_change, train_change = LEVERS[lever]
        if feature_change:
            secs = with_features(sdatas, cache=cache, progress=progress, features={**MAIN_FEATURES, **feature_change})
            seconds[lever] = float(np.mean(list(secs.values())))
        tables = {n: get_table(s).copy() for n, s in sdatas.items()}
        for method in ("hist", "ridge") if feature_change else ("hist",):
            kw = {**({"epochs": epochs} if epochs is not None and method != "ridge" else {}), **train_change}
            jobs.append({"kind": "expression", "dataset": "her2st", "protocol": "lopo", "method": method, "variant": lever,
                         "tables": tables, "genes": genes, "train_kwargs": kw})
    if any(LEVERS[lever][0] for lever in levers):  # back to the main features for what follows
        with_features(sdatas, cache=cache, progress=progress, features=MAIN_FEATURES)
    return jobs, seconds


def run_benchmark(out: Path, *, data_dir: str | None = None, methods: Sequence[str] | None = None,
                  n_genes: int = 50, protocols: Sequence[str] = ("lopo", "loso"), mob: bool = True,
                  tumor: bool = True, levers: Sequence[str] | None = None, epochs: int | None = None,
                  n_jobs: int = 2, progress: bool = False) -> pd.DataFrame:
    """Cross-validated comparison of HiST, its ablations, the levers and the baselines; writes ``out/benchmark.csv``.

    Every method sees the same features (:data:`MAIN_FEATURES`), folds and per-fold genes (selected on the fold's
    training sections, including her2st's count-only sections of training patients). The architecture ablations
    (:data:`CHEAP_ONLY`) skip her2st leave-one-section-out. Each lever of :data:`LEVERS` (default: all) changes one
    thing of the main configuration and runs on her2st leave-one-patient-out (column ``variant``; ``"main"`` for
    the main configuration). Cross-validations run in ``n_jobs`` worker processes with one torch thread each;
    ``peak_rss_mib`` is the worker's peak memory. With ``tumor=True`` also validates the expression-derived tumour
    labels against the pathologists (``out/tumor_labels.csv``; the recipe chosen on six labelled sections and
    scored on the seventh: ``out/tumor_labels_cv.csv``) and runs tumour segmentation leave-one-patient-out
    (``out/tumor_segmentation.csv``); these tables are in ``table.attrs``.
    """
    from hist_sd._core._data import get_table

    methods = tuple(methods or expression_methods())
    levers = tuple(LEVERS if levers is None else levers)
    unknown = sorted(set(levers) - set(LEVERS))
    if unknown:
        raise ValueError(f"`levers`: unknown {unknown}; expected some of {list(LEVERS)}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    datasets_used = ["her2st"] + (["mob"] if mob else [])
    prepared: dict[str, dict[str, Any]] = {}
    jobs: list[dict[str, Any]] = []
    for dataset in datasets_used:
        sdatas, extra = _sections_for(dataset, data_dir)
        feat_s = with_features(sdatas, cache=out / "cache", progress=progress, features=MAIN_FEATURES)
        tables = {n: get_table(s).copy() for n, s in sdatas.items()}
        extra_tables = {n: get_table(s) for n, s in extra.items()}
        prepared[dataset] = {"sdatas": sdatas, "features_seconds": feat_s}
        for protocol in (protocols if dataset == "her2st" else ("loso",)):
            t0 = time.perf_counter()
            genes = _fold_genes(tables, extra_tables, protocol, n_genes)
            logger.warning("%s %s: genes selected for %d folds in %.0f s", dataset, protocol, len(genes),
                           time.perf_counter() - t0)
            for method in methods:
                if method in CHEAP_ONLY and dataset == "her2st" and protocol == "loso":
                    continue
                kw = {"epochs": epochs} if epochs is not None and method != "ridge" else {}
                jobs.append({"kind": "expression", "dataset": dataset, "protocol": protocol, "method": method, "variant": "main",
                             "tables": tables, "genes": genes, "train_kwargs": kw})
            if dataset == "her2st" and protocol == "lopo" and levers:
                lever_jobs, lever_s = _lever_jobs(sdatas, genes, cache=out / "cache", epochs=epochs, levers=levers,
                                                  progress=progress)
                jobs += lever_jobs
                prepared[dataset]["lever_features_seconds"] = lever_s
    if tumor:
        jobs += _tumor_jobs(prepared["her2st"]["sdatas"], epochs=epochs)
    results, labels, labels_cv = _run_pool(jobs, n_jobs=n_jobs, meanwhile=_labels if tumor else None,
                                           data_dir=data_dir)
    table, all_scores = _expression_table([(j, r) for j, r in results if j["kind"] == "expression"], prepared,
                                          methods=methods)
    if tumor:
        labels.to_csv(out / "tumor_labels.csv")
        labels_cv.to_csv(out / "tumor_labels_cv.csv")
        seg = _segmentation_table([(j, r) for j, r in results if j["kind"] == "tumor"])
        seg.to_csv(out / "tumor_segmentation.csv", index=False)
        table.attrs.update(tumor_labels=labels, tumor_labels_cv=labels_cv, tumor_segmentation=seg)
    table.attrs["total_seconds"] = time.perf_counter() - t_all
    table.to_csv(out / "benchmark.csv", index=False)
    all_scores.to_csv(out / "benchmark_scores.csv", index=False)
    return table


def _labels(*, data_dir: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tumour-label recipe against the pathologists: as it is, and chosen on six sections, scored on the 7th."""
    from hist_sd._bench_tumor import run_tumor_labels_cv

    return run_tumor_labels(data_dir=data_dir), run_tumor_labels_cv(data_dir=data_dir)


def _run_pool(jobs: list[dict[str, Any]], *, n_jobs: int, meanwhile: Any = None,
              **kwargs: Any) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], Any, Any]:
    """Run the jobs in ``n_jobs`` worker processes, the slowest first, and ``meanwhile(**kwargs)`` in this one.

    Returns the ``(job, result)`` pairs followed by what ``meanwhile`` returned (two ``None`` without it). The tumour
    labels run here rather than in a worker: infercnvpy starts a process per call, which costs seconds each in a
    worker started by ``spawn`` and nothing in this (forking) process.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    def slow_first(j: dict[str, Any]) -> tuple[bool, bool]:
        return (not j["method"].startswith("hist"), j["protocol"] != "loso")

    jobs = sorted(jobs, key=slow_first)
    extra: Any = (None, None)
    with ProcessPoolExecutor(max_workers=max(1, n_jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_cv_job, job) for job in jobs]
        if meanwhile is not None:
            extra = meanwhile(**kwargs)
        results = [f.result() for f in futures]
    return list(zip(jobs, results, strict=True)), *extra


def _expression_table(results: list[tuple[dict[str, Any], dict[str, Any]]], prepared: dict[str, dict[str, Any]], *,
                      methods: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One summary row per expression cross-validation, and all their per-gene scores."""
    rows, all_scores = [], []
    for job, res in results:
        scores = res["scores"]
        for col in ("variant", "protocol", "dataset"):
            scores.insert(0, col, job[col])
        all_scores.append(scores)
        feat = prepared[job["dataset"]]
        feat_s = feat.get("lever_features_seconds", {}).get(job["variant"])
        row = {"dataset": job["dataset"], "protocol": job["protocol"], "variant": job["variant"],
               **res["summary"].iloc[0].to_dict(),
               "features_seconds_per_section": feat_s if feat_s is not None
               else float(np.mean(list(feat["features_seconds"].values()))),
               "cv_seconds": res["seconds"], "peak_rss_mib": res["peak_rss_mib"]}
        rows.append(row)
        logger.warning("%s %s %-16s %-28s mean PCC %.3f  median %.3f  r>0.3 %.1f  (%.0f s)", job["dataset"],
                       job["protocol"], job["method"], job["variant"], row["mean_pearson"], row["median_pearson"],
                       row["genes_r_gt_0.3"], row["cv_seconds"])
    order = {m: i for i, m in enumerate(methods)}
    table = pd.DataFrame(rows)
    table["_main"] = table["variant"] != "main"
    table = table.sort_values(["dataset", "protocol", "_main", "variant", "method"],
                              key=lambda c: c.map(order) if c.name == "method" else c,
                              kind="stable").drop(columns="_main").reset_index(drop=True)
    return table, pd.concat(all_scores, ignore_index=True)


def run_tumor_labels(sections: Sequence[str] | None = None, *, data_dir: str | None = None,
                     window_size: int = 100) -> pd.DataFrame:
    """``hs.tl.tumor_labels`` (expression only) against the her2st pathologists, one row per labelled section.

    Truth is "invasive cancer" or "cancer in situ"; "undetermined" and unlabelled spots are left out. AUC is
    of ``obs["tumor_score"]``, accuracy / sensitivity / specificity / Dice of the call ``obs["tumor"]``.
    """
    from hist_sd import datasets, tl
    from hist_sd.datasets._her2st import HER2ST_LABELLED

    rows = []
    for section in sections or HER2ST_LABELLED:
        table = datasets.her2st(section, data_dir=data_dir, scale_factors=None)[section].tables[C.TABLE_KEY]
        t0 = time.perf_counter()
        tl.tumor_labels(table, window_size=window_size)
        seconds = time.perf_counter() - t0
        table.obs["pathologist_tumor"] = pathologist_truth(table.obs["label"])
        by_score = tl.evaluate_segmentation(table, pred=C.TUMOR_SCORE, truth="pathologist_tumor")
        by_call = tl.evaluate_segmentation(table, pred=C.TUMOR, truth="pathologist_tumor")
        rows.append({
            "section": section,
            "n_spots": int(by_call["n_spots"].iloc[0]),
            "tumor_fraction": float(by_call["n_tumor"].iloc[0] / by_call["n_spots"].iloc[0]),
            "called_fraction": float(table.obs.loc[table.obs["pathologist_tumor"].notna(), C.TUMOR].mean()),
            "auc": float(by_score["auc"].iloc[0]),
            "accuracy": float(by_call["accuracy"].iloc[0]),
            "sensitivity": float(by_call["sensitivity"].iloc[0]),
            "specificity": float(by_call["specificity"].iloc[0]),
            "dice": float(by_call["dice"].iloc[0]),
            "seconds": seconds,
        })
        logger.warning("tumour labels %s: AUC %.3f accuracy %.3f (%.1f s)", section, rows[-1]["auc"],
                       rows[-1]["accuracy"], seconds)
    df = pd.DataFrame(rows).set_index("section")
    df.loc["mean"] = df.mean(axis=0)
    return df


def _tumor_jobs(sdatas: dict[str, Any], *, methods: Sequence[str] = ("hist", "mlp"),
                epochs: int | None = None) -> list[dict[str, Any]]:
    """The tumour segmentation jobs of each method, against labels from expression (computed first)."""
    from hist_sd import tl
    from hist_sd._core._data import get_table

    tables = {}
    for name, sdata in sdatas.items():
        table = get_table(sdata)
        if C.TUMOR not in table.obs:
            tl.tumor_labels(table)
        tables[name] = table.copy()
    jobs = []
    for method in methods:
        kw = {"epochs": epochs} if epochs is not None and method != "ridge" else {}
        jobs.append({"kind": "tumor", "dataset": "her2st", "protocol": "lopo", "method": method, "tables": tables,
                     "train_kwargs": kw})
    return jobs


def _segmentation_table(results: list[tuple[dict[str, Any], dict[str, Any]]]) -> pd.DataFrame:
    rows = []
    for job, res in results:
        scores, summary = res["scores"], res["summary"]
        row = {"dataset": "her2st", "protocol": "lopo", "task": "tumor", **summary.iloc[0].to_dict()}
        row["per_section_auc"] = "; ".join(f"{s}={a:.3f}" for s, a in zip(scores["section"], scores["auc"], strict=True))
        rows.append(row)
        logger.warning("tumour segmentation %s: mean AUC %.3f", job["method"], row["mean_auc"])
    return pd.DataFrame(rows)


def run_tumor_segmentation(sdatas: dict[str, Any], *, methods: Sequence[str] = ("hist", "mlp"),
                           epochs: int | None = None, n_jobs: int = 1) -> pd.DataFrame:
    """Tumour segmentation from H&E, leave-one-patient-out, against expression-derived labels of each section."""
    results, _, _ = _run_pool(_tumor_jobs(sdatas, methods=methods, epochs=epochs), n_jobs=n_jobs)
    return _segmentation_table(results)


def markdown(df: pd.DataFrame, *, index: bool = False, digits: int = 3) -> str:
    """A DataFrame as a Markdown table (floats rounded to ``digits``)."""
    df = df.reset_index() if index else df

    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "| " + " | ".join("---" for _ in df.columns) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def format_table(table: pd.DataFrame) -> str:
    """The expression benchmark table as Markdown."""
    cols = ["dataset", "protocol", "variant", "method", "mean_pearson", "ci95_low", "ci95_high", "median_pearson",
            "genes_r_gt_0.3", "median_moran_pred", "median_moran_true", "n_pc90_pred", "n_pc90_true",
            "train_seconds_per_fold", "predict_seconds_per_section", "peak_rss_mib"]
    return markdown(table[[c for c in cols if c in table.columns]])
