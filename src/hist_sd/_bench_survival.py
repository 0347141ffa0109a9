"""The whole-slide survival benchmark behind ``hist-sd survival``.

G-HANet against MIL baselines, the linear floor and genomic references, on the published 5-fold splits of the
bundled TCGA cohorts or on a cohort a user brings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from hist_sd.io import Cohort

logger = logging.getLogger("hist_sd")

#: The bundled cohorts (real TCGA HIPT region features + MCAT/PORPOISE tables + published splits).
TCGA_COHORTS: tuple[str, ...] = ("blca", "brca", "gbmlgg", "luad", "ucec")
#: The benchmark's methods when none are named: G-HANet, the attention-MIL baseline, the linear floor and the
#: genomic references (G-HANet's ablations and ``transmil`` run with ``--methods``; together they do not fit the
#: 30-minute budget of one run on two CPU cores).
BENCH_METHODS: tuple[str, ...] = ("ghanet", "abmil", "meanpool", "snn", "coxgenomics")
#: Outputs of one run (refused when present unless ``overwrite``).
OUTPUTS: tuple[str, ...] = ("scores.csv", "risks.csv", "summary.csv")


def check_survival_args(
    out: Path, *, cohorts: Sequence[str] | None, features: str | None, table: str | None, splits: str | None,
    methods: Sequence[str] | None, overwrite: bool, signatures: str | None = None,
) -> tuple[list[str], list[str]]:
    """Validate the arguments before any data is read; returns the cohorts and methods to run."""
    if signatures is not None and table is None:
        raise ValueError("--signatures goes with a cohort of your own (--features/--table/--splits).")
    if signatures is not None and not Path(signatures).expanduser().is_file():
        raise FileNotFoundError(f"--signatures: no such file: {signatures!r}")
    from hist_sd.tl._survival import _check_methods

    methods = _check_methods(list(methods) if methods else list(BENCH_METHODS))
    own = [features, table, splits]
    if any(v is not None for v in own):
        if cohorts:
            raise ValueError("Give either --cohorts or --features/--table/--splits, not both.")
        if any(v is None for v in own):
            raise ValueError("A cohort of your own needs all of --features DIR, --table CSV and --splits DIR.")
        for name, path, kind in (("--features", features, "dir"), ("--table", table, "file"), ("--splits", splits, "dir")):
            p = Path(str(path)).expanduser()
            if not (p.is_dir() if kind == "dir" else p.is_file()):
                raise FileNotFoundError(f"{name}: no such {'folder' if kind == 'dir' else 'file'}: {str(path)!r}")
        cohorts = [Path(str(table)).name.split(".")[0]]
    else:
        cohorts = [c.lower() for c in (cohorts or TCGA_COHORTS)]
        bad = [c for c in cohorts if c not in TCGA_COHORTS]
        if bad:
            raise ValueError(f"--cohorts: unknown cohorts {bad}; bundled: {', '.join(TCGA_COHORTS)}.")
    existing = [f for f in OUTPUTS if (Path(out) / f).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"--out {str(out)!r} holds results already ({', '.join(existing)}); pass --overwrite.")
    return cohorts, methods


def _cohort(name: str, *, data_dir: str | None, features: str | None, table: str | None, splits: str | None,
            signatures: str | None) -> Cohort:
    from hist_sd import datasets, io

    if table is not None:
        return io.read_cohort(features, table, splits=splits, signatures=signatures, name=name)
    return datasets.tcga(name, data_dir=data_dir)


def run_survival(
    out: Path, *, cohorts: Sequence[str] | None = None, features: str | None = None, table: str | None = None,
    splits: str | None = None, signatures: str | None = None, methods: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    epochs: int | None = None, n_jobs: int = 2, data_dir: str | None = None, overwrite: bool = False,
    plots: bool = True,
) -> pd.DataFrame:
    """Cross-validate survival methods on each cohort and write the results to ``out``.

    Writes ``scores.csv``, ``risks.csv``, ``summary.csv`` and one Kaplan-Meier figure per cohort
    (``km_<cohort>.png``). Returns the summary (mean and standard deviation over folds and seeds, per cohort and
    method); its ``attrs`` hold the scores and the run time.
    """
    out = Path(out)
    cohorts, methods = check_survival_args(out, cohorts=cohorts, features=features, table=table, splits=splits,
                                           methods=methods, overwrite=overwrite, signatures=signatures)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    all_scores, all_risks = [], []
    for name in cohorts:
        t0 = time.perf_counter()
        cohort = _cohort(name, data_dir=data_dir, features=features, table=table, splits=splits, signatures=signatures)
        from hist_sd import tl

        res = tl.cross_validate_survival(cohort, methods=methods, seeds=seeds, epochs=epochs, n_jobs=n_jobs,
                                         device="cpu" if n_jobs > 1 else "auto")
        all_scores.append(res.scores)
        all_risks.append(res.risks.assign(cohort=cohort.name))
        if plots:
            km_figure(cohort, methods, out / f"km_{cohort.name}.png")
        s = res.summary.set_index("method")
        logger.warning("%s (%d patients): %s  (%.0f s)", cohort.name, cohort.n_patients,
                       "  ".join(f"{m} {s.loc[m, 'c_index_mean']:.3f}" for m in methods), time.perf_counter() - t0)
    scores = pd.concat(all_scores, ignore_index=True)
    risks = pd.concat(all_risks, ignore_index=True)
    summary = summarize_survival(scores)
    summary.attrs["total_seconds"] = time.perf_counter() - t_all
    scores.to_csv(out / "scores.csv", index=False)
    risks.to_csv(out / "risks.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    summary.attrs["scores"] = scores
    return summary


def summarize_survival(scores: pd.DataFrame) -> pd.DataFrame:
    """Per cohort and method: mean and standard deviation over folds (and seeds) of Harrell's and Uno's C-index."""
    g = scores.groupby(["cohort", "method"], sort=False)
    summary = g[["c_index", "c_index_uno"]].agg(["mean", "std"])
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    return summary.reset_index().assign(n_runs=g.size().to_numpy(), train_seconds=g["train_seconds"].mean().to_numpy())


def km_figure(cohort: Cohort, methods: Sequence[str], path: Path) -> None:
    """One Kaplan-Meier panel per method: held-out patients split at their fold's training median risk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hist_sd import pl

    groups = cohort.patients.obsm["survival_cv_group"]
    n = len(methods)
    ncols = min(n, 4)
    fig, axes = plt.subplots((n + ncols - 1) // ncols, ncols, figsize=(4 * ncols, 3.3 * ((n + ncols - 1) // ncols)),
                             squeeze=False)
    for ax, method in zip(axes.ravel(), methods, strict=False):
        held = groups[method].to_numpy() != ""
        sub = cohort.patients[held].copy()
        sub.obs["held-out risk"] = pd.Categorical(groups[method].to_numpy()[held], categories=["low", "high"])
        pl.kaplan_meier(sub, groups_key="held-out risk", ax=ax, title=f"{cohort.name} {method}", show=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(summary: pd.DataFrame) -> str:
    """Methods x cohorts of 'mean ± sd' C-index, plus the mean over cohorts (for README)."""
    cell = summary.assign(v=[f"{m:.3f} ± {s:.3f}" for m, s in zip(summary["c_index_mean"], summary["c_index_std"], strict=True)])
    wide = cell.pivot(index="method", columns="cohort", values="v")
    means = summary.pivot(index="method", columns="cohort", values="c_index_mean").mean(axis=1)
    order = list(dict.fromkeys(summary["method"]))
    wide = wide.reindex(order)
    wide["mean"] = [f"{means[m]:.3f}" for m in order]
    header = "| method | " + " | ".join(wide.columns) + " |"
    rows = ["| " + m + " | " + " | ".join(str(v) for v in r) + " |" for m, r in zip(wide.index, wide.to_numpy(), strict=True)]
    return "\n".join([header, "|" + "---|" * (len(wide.columns) + 1), *rows])

