"""Leave-one-labelled-section-out validation of the recipe of ``hs.tl.tumor_labels`` (her2st, issue #14).

her2st has seven sections with a pathologist's labels (B1, C1, D1, E1, F1, G2, H1), and all seven were looked at while
the recipe was built. :func:`run_tumor_labels_cv` holds out each in turn: the recipe's settings are chosen on the
other six (highest mean AUC of ``obs["tumor_score"]``; among settings of equal AUC, i.e. those differing only in how
spots are called, the highest mean accuracy of ``obs["tumor"]``) and scored on the held-out one, next to the
default recipe. Each section's expensive steps run once and serve every setting that shares them: normalisation and
marker scores once, infercnvpy once per ``(window_size, reference_fraction)``, the principal components once per
noise threshold, k-means once per number of clusters (only where a call is needed).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd.tl import _tumor as T

logger = logging.getLogger("hist_sd")

__all__ = ["GRID", "default_setting", "run_tumor_labels_cv"]

#: Knobs that change ``obs["tumor_score"]`` (chosen by AUC), in the order of :data:`GRID`.
SCORE_KNOBS: tuple[str, ...] = (
    "window_size", "reference_fraction", "dynamic_threshold", "core_rule", "marker_weight", "smooth",
)  # fmt: skip
#: Knobs that change only the call ``obs["tumor"]`` (chosen by accuracy among the settings of the best AUC).
CALL_KNOBS: tuple[str, ...] = ("n_clusters", "call_threshold")

#: The default grid: 324 score settings x 9 call settings. Each knob's first value is today's default, and ties go to
#: the earlier value. ``window_size`` x ``reference_fraction`` are the infercnvpy runs per section (9).
GRID: dict[str, tuple[Any, ...]] = {
    "window_size": (100, 50, 200),
    "reference_fraction": (0.2, 0.1, 0.3),
    "dynamic_threshold": (1.5, None),
    "core_rule": ("auto", "cnv"),
    "marker_weight": (0.0, 0.25, 0.5),
    "smooth": (True, False),
    "n_clusters": (None, 4, 8),
    "call_threshold": (0.5, 0.3, 0.7),
}

#: Pathologist labels counted as tumour, and those left out of the truth.
TUMOUR_LABELS: tuple[str, ...] = ("invasive cancer", "cancer in situ")
EXCLUDED_LABELS: tuple[str, ...] = ("undetermined",)

ScoreKey = tuple[Any, ...]
CallKey = tuple[Any, ...]


def default_setting() -> dict[str, Any]:
    """Today's settings of :func:`hist_sd.tl.tumor_labels`: its argument defaults and the module's fixed choices."""
    params = inspect.signature(T.tumor_labels).parameters
    return {
        "window_size": params["window_size"].default,
        "reference_fraction": params["reference_fraction"].default,
        "dynamic_threshold": T.DYNAMIC_THRESHOLD,
        "core_rule": T.CORE_RULE,
        "marker_weight": T.MARKER_WEIGHT,
        "smooth": params["smooth"].default,
        "n_clusters": params["n_clusters"].default,
        "call_threshold": T.CALL_THRESHOLD,
    }


def run_tumor_labels_cv(
    *,
    data_dir: str | None = None,
    sections: Sequence[str] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Leave-one-labelled-section-out AUC and accuracy of ``hs.tl.tumor_labels`` with settings chosen on the others.

    Parameters
    ----------
    data_dir
        Local data mirror (default ``$HIST_SD_DATA_DIR``).
    sections
        her2st sections with pathologist labels (default all seven; at least two).
    grid
        Values to try per knob (keys of :data:`GRID`); a knob left out keeps today's default. Default :data:`GRID`.
    progress
        Show a bar over the sections.

    Returns
    -------
    One row per held-out section (index ``section``) and a ``"mean"`` row: the chosen settings (one column per knob),
    ``auc`` and ``accuracy`` of the held-out section with them, ``default_auc`` and ``default_accuracy`` with today's
    settings, and ``n_spots`` (labelled spots). ``attrs`` holds the setting chosen on all sections
    (``"chosen_on_all"``), its in-sample mean AUC and accuracy, the number of settings and the seconds taken.
    """
    from threadpoolctl import threadpool_limits

    from hist_sd import datasets
    from hist_sd._core._runtime import progress as bar
    from hist_sd.datasets._her2st import HER2ST_LABELLED

    names = list(HER2ST_LABELLED if sections is None else sections)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"`sections` must name at least two distinct labelled sections, got {names!r}.")
    unknown = sorted(set(names) - set(HER2ST_LABELLED))
    if unknown:
        raise ValueError(f"`sections` {unknown} have no pathologist labels; choose from {list(HER2ST_LABELLED)}.")
    full = _full_grid(grid)
    t0 = time.perf_counter()
    positions = datasets.gene_positions("hg38", data_dir=data_dir)
    evaluated: dict[str, SectionGrid] = {}
    with threadpool_limits(1):  # single-threaded BLAS: PCA is an order of magnitude slower on a busy shared CPU
        for name in bar(names, enabled=progress, desc="tumour labels grid"):
            table = datasets.her2st(name, data_dir=data_dir, scale_factors=None)[name].tables["table"]
            evaluated[name] = SectionGrid(table, pathologist_truth(table.obs["label"]), full, gene_positions=positions)
        df = lolso(evaluated, full)
    df.attrs["seconds"] = time.perf_counter() - t0
    logger.warning(
        "tumour labels, leave-one-labelled-section-out: mean AUC %.3f (default %.3f) in %.0f s",
        df.loc["mean", "auc"], df.loc["mean", "default_auc"], df.attrs["seconds"],
    )  # fmt: skip
    return df


def pathologist_truth(labels: pd.Series) -> pd.Series:
    """True for cancer, False for other tissue, NaN for undetermined / unlabelled spots."""
    lab = labels.astype(object)
    truth = lab.isin(TUMOUR_LABELS).astype(object)
    truth[lab.isna() | lab.isin(EXCLUDED_LABELS)] = np.nan
    return truth


def _full_grid(grid: Mapping[str, Sequence[Any]] | None) -> dict[str, tuple[Any, ...]]:
    """Every knob with its values; knobs missing from ``grid`` keep the default only."""
    if grid is None:
        return dict(GRID)
    unknown = sorted(set(grid) - set(GRID))
    if unknown:
        raise ValueError(f"`grid` has unknown knobs {unknown}; known: {list(GRID)}.")
    default = default_setting()
    out = {}
    for knob in GRID:
        values = tuple(grid.get(knob, (default[knob],)))
        if not values:
            raise ValueError(f"`grid[{knob!r}]` is empty; give at least one value.")
        out[knob] = values
    return out


class SectionGrid:
    """Scores of every setting on one section (eager), and calls (lazy, memoised).

    Parameters
    ----------
    table
        The section's table with raw counts.
    truth
        Per spot: True (cancer), False (other tissue) or NaN (left out).
    grid
        Every knob of :data:`GRID` with its values.
    gene_positions
        Position table (default: that of hg38 from the local mirror).
    seed
        Seed of the PCA and k-means, as in :func:`hist_sd.tl.tumor_labels`.
    """

    def __init__(
        self,
        table: AnnData,
        truth: pd.Series,
        grid: Mapping[str, Sequence[Any]],
        *,
        gene_positions: pd.DataFrame | None = None,
        seed: int = 0,
    ) -> None:
        from sklearn.metrics import roc_auc_score

        keep = truth.notna().to_numpy()
        self.keep, self.y, self.seed, self.n_obs = keep, truth[keep].astype(bool).to_numpy(), seed, table.n_obs
        prep = T._prepare(table, layer=None, gene_positions=gene_positions, genome="hg38")
        self._near = near = T._neighbours(table, "auto") if any(grid["smooth"]) else None
        self._scored: dict[ScoreKey, tuple[np.ndarray, np.ndarray, np.ndarray, tuple[Any, ...]]] = {}
        self._components: dict[tuple[Any, ...], np.ndarray] = {}
        self._clusters: dict[tuple[Any, ...], np.ndarray] = {}
        self._accuracy: dict[tuple[ScoreKey, CallKey], float] = {}
        self.auc: dict[ScoreKey, float] = {}
        for window, fraction in itertools.product(grid["window_size"], grid["reference_fraction"]):
            ref, _, _ = T._final_reference(None, prep.marker, prep.used, fraction)
            raw = T._cnv_profiles(prep.work, ref, window)
            for threshold in grid["dynamic_threshold"]:
                x = T._denoise(raw, threshold)
                cnv_key = (window, fraction, threshold)
                self._components[cnv_key] = T._components(x, seed)
                for core_rule, weight, smooth in itertools.product(
                    grid["core_rule"], grid["marker_weight"], grid["smooth"]
                ):
                    score, core = T._score(x, prep, ref, reference_fraction=fraction, near=near if smooth else None,
                                           core_rule=core_rule, marker_weight=weight)
                    key = (*cnv_key, core_rule, weight, smooth)
                    self._scored[key] = (score, core, ref, cnv_key)
                    self.auc[key] = float(roc_auc_score(self.y, score[keep]))

    def accuracy(self, score_key: ScoreKey, call_key: CallKey) -> float:
        """Accuracy of the call of one setting on the labelled spots (computed once)."""
        memo = (score_key, call_key)
        if memo not in self._accuracy:
            score, core, ref, cnv_key = self._scored[score_key]
            n_clusters, call_threshold = call_key
            k = T._n_clusters(self.n_obs) if n_clusters is None else int(n_clusters)
            if (cnv_key, k) not in self._clusters:
                self._clusters[cnv_key, k] = T._kmeans(self._components[cnv_key], k, self.seed)
            smooth = score_key[SCORE_KNOBS.index("smooth")]
            call, _, _ = T._call(score, self._clusters[cnv_key, k], ref, core, near=self._near if smooth else None,
                                 call_threshold=call_threshold)
            self._accuracy[memo] = float(np.mean(call[self.keep] == self.y))
        return self._accuracy[memo]


def choose(
    auc: pd.DataFrame,
    accuracy: Callable[[str, ScoreKey, CallKey], float],
    train: Sequence[str],
    call_keys: Sequence[CallKey],
) -> tuple[ScoreKey, CallKey]:
    """The setting chosen on ``train`` only: highest mean AUC, then highest mean accuracy, then the earliest.

    ``auc`` has one row per score setting (in grid order) and one column per section; ``accuracy(section, score_key,
    call_key)`` is asked only for sections of ``train``.
    """
    mean_auc = auc[list(train)].mean(axis=1).to_numpy()
    tied = [key for key, value in zip(auc.index, mean_auc, strict=True) if value >= mean_auc.max() - 1e-12]
    candidates = [(s, c) for s in tied for c in call_keys]
    mean_acc = [np.mean([accuracy(section, s, c) for section in train]) for s, c in candidates]
    return candidates[int(np.argmax(mean_acc))]


def lolso(evaluated: Mapping[str, SectionGrid], grid: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """The leave-one-labelled-section-out table from each section's evaluated grid (see :func:`run_tumor_labels_cv`)."""
    names = list(evaluated)
    score_keys = list(itertools.product(*(grid[k] for k in SCORE_KNOBS)))
    call_keys = list(itertools.product(*(grid[k] for k in CALL_KNOBS)))
    auc = pd.DataFrame({n: [evaluated[n].auc[k] for k in score_keys] for n in names},
                       index=pd.Index(score_keys, tupleize_cols=False))

    def accuracy(section: str, score_key: ScoreKey, call_key: CallKey) -> float:
        return evaluated[section].accuracy(score_key, call_key)

    default = default_setting()
    d_score, d_call = tuple(default[k] for k in SCORE_KNOBS), tuple(default[k] for k in CALL_KNOBS)
    rows = []
    for held_out in names:
        sec = evaluated[held_out]
        s_key, c_key = choose(auc, accuracy, [n for n in names if n != held_out], call_keys)
        row = {"section": held_out, **dict(zip(SCORE_KNOBS + CALL_KNOBS, s_key + c_key, strict=True))}
        row |= {"auc": sec.auc[s_key], "accuracy": sec.accuracy(s_key, c_key), "n_spots": int(sec.keep.sum())}
        if d_score in sec.auc:
            row |= {"default_auc": sec.auc[d_score], "default_accuracy": sec.accuracy(d_score, d_call)}
        rows.append(row)
    df = pd.DataFrame(rows).set_index("section")
    for knob in SCORE_KNOBS + CALL_KNOBS:  # keep None (not NaN) and the grid's own values
        df[knob] = pd.Series([row[knob] for row in rows], index=df.index, dtype=object)
    metrics = [c for c in ("auc", "accuracy", "n_spots", "default_auc", "default_accuracy") if c in df.columns]
    df.loc["mean", metrics] = df[metrics].mean(axis=0)
    s_all, c_all = choose(auc, accuracy, names, call_keys)
    df.attrs["chosen_on_all"] = dict(zip(SCORE_KNOBS + CALL_KNOBS, s_all + c_all, strict=True))
    df.attrs["in_sample_auc"] = float(np.mean([evaluated[n].auc[s_all] for n in names]))
    df.attrs["in_sample_accuracy"] = float(np.mean([accuracy(n, s_all, c_all) for n in names]))
    df.attrs["n_settings"] = len(score_keys) * len(call_keys)
    return df
