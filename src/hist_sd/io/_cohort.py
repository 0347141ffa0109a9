"""Whole-slide survival cohorts: per-slide instance features (CLAM / TRIDENT files) + a survival/genomics table.

A :class:`Cohort` holds two AnnData tables: ``patients`` (one row per case: survival, clinical columns, genomics in
``X``) and ``instances`` (one row per region or patch, grouped by patient, features in ``X``), plus optional
cross-validation folds. :func:`read_cohort` builds one from a folder of ``<slide_id>.pt`` / ``<slide_id>.h5`` files
and a MCAT / PORPOISE-style CSV table.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from hist_sd._core._files import atomic_path, clean_stale
from hist_sd._core._runtime import progress as _progress

__all__ = ["Cohort", "read_cohort", "read_slide_features"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: Keys of ``patients.obs`` every cohort has.
TIME_KEY = "survival_months"
CENSORSHIP_KEY = "censorship"
EVENT_KEY = "event"
N_SLIDES_KEY = "n_slides"
N_INSTANCES_KEY = "n_instances"
#: Keys of ``instances.obs``.
CASE_KEY = "case_id"
SLIDE_KEY = "slide_id"
#: Genomic column suffixes of the MCAT / PORPOISE tables, in the order ``var["omic"]`` reports them.
OMICS: tuple[str, ...] = ("rnaseq", "cnv", "mut")
#: ``var["family"]`` of a genomic column in no family.
NO_FAMILY = "none"
#: ``uns["hist_sd"]["dropped"]`` keys, in the order :func:`read_cohort` applies the drops.
DROPS: tuple[str, ...] = (
    "slides_without_features",
    "patients_without_features",
    "patients_invalid_survival",
    "genomic_columns_with_nan",
    "split_cases_not_in_cohort",
)
#: Split values: in the training part of a fold, in its test part, or not in that fold's file.
SPLIT_VALUES: tuple[str, ...] = ("train", "test", "")
FEATURE_SUFFIXES: tuple[str, ...] = (".h5", ".pt")
_FILES = {"patients": "patients.h5ad", "instances": "instances.h5ad", "splits": "splits.csv"}


def _shown(names: Iterable[Any], n: int = 10) -> str:
    names = [str(x) for x in names]
    return ", ".join(names[:n]) + (f" … ({len(names)} in all)" if len(names) > n else "")


def _omic_of(column: str) -> str | None:
    for omic in OMICS:
        if column.endswith(f"_{omic}") and len(column) > len(omic) + 1:
            return omic
    return None


def genomic_var(columns: Sequence[str], families: Mapping[str, Iterable[str]] | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``var`` (``gene``, ``omic``, ``family``) and ``varm["families"]`` of genomic columns like ``"TP53_rnaseq"``.

    ``gene`` is the column name without its ``_rnaseq`` / ``_cnv`` / ``_mut`` suffix (the whole name when it has
    none; ``omic`` is then ``"other"``); ``family`` is the first family (in ``families`` order) holding the gene,
    else ``"none"``. ``varm["families"]`` is a bool DataFrame with one column per family.
    """
    index = pd.Index([str(c) for c in columns])
    omics = [_omic_of(c) for c in index]
    genes = [c[: -len(o) - 1] if o else c for c, o in zip(index, omics, strict=True)]
    fams = {str(k): {str(g) for g in v} for k, v in (families or {}).items()}
    member = pd.DataFrame({f: [g in members for g in genes] for f, members in fams.items()}, index=index, dtype=bool)
    first = [next((f for f in fams if g in fams[f]), NO_FAMILY) for g in genes]
    var = pd.DataFrame({"gene": genes, "omic": [o or "other" for o in omics], "family": first}, index=index)
    return var, member


class Cohort:
    """Patients with survival (and genomics) and their whole-slide instance bags, for survival MIL (G-HANet).

    Parameters
    ----------
    patients
        One row per case (``obs_names`` = case ids). ``obs`` must hold ``"survival_months"`` (finite, >= 0) and
        ``"censorship"`` (1 = censored) or ``"event"`` (1/True = death observed); the other is derived and both
        are checked to agree. ``obs["n_slides"]`` and ``obs["n_instances"]`` are (re)computed from
        ``instances``. ``X`` holds genomics (may have 0 columns); ``var`` gets ``gene``/``omic``/``family`` and
        ``varm["families"]`` when missing. The AnnData is copied.
    instances
        One row per region or patch: ``obs["case_id"]`` (a patient of ``patients``), ``obs["slide_id"]``
        (defaults to the case id), a dense 2-D float ``X`` (stored as float32), optional ``obsm["spatial"]``.
        Rows are reordered (stably) to follow ``patients`` when they are not grouped that way already.
    splits
        Cross-validation folds: index = case ids, columns ``"fold_0"`` … ``"fold_{K-1}"``, values ``"train"``,
        ``"test"`` or ``""`` (not in that fold). Patients missing from the index get ``""``.
    name
        Cohort name (kept in ``patients.uns["hist_sd"]["cohort"]``).

    Attributes
    ----------
    patients, instances, splits, name
        As above, validated.

    Examples
    --------
    >>> import numpy as np, pandas as pd, anndata as ad, hist_sd as hs
    >>> p = ad.AnnData(obs=pd.DataFrame({"survival_months": [3.0, 10.0], "censorship": [0, 1]}, index=["a", "b"]))
    >>> i = ad.AnnData(np.ones((5, 4), np.float32), obs=pd.DataFrame({"case_id": list("aabbb")}, index=list("01234")))
    >>> c = hs.io.Cohort(p, i, name="toy")
    >>> [b.shape for b in c.bags()]
    [(2, 4), (3, 4)]
    """

    def __init__(self, patients: AnnData, instances: AnnData, *, splits: pd.DataFrame | None = None,
                 name: str = "cohort") -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string, got {name!r}.")
        self.name = name
        self.patients = _check_patients(patients, name)
        self.instances, self._offsets = _check_instances(instances, self.patients)
        counts = np.diff(self._offsets)
        codes = np.repeat(np.arange(self.patients.n_obs), counts)
        slide_codes = self.instances.obs[SLIDE_KEY].cat.codes.to_numpy()
        pairs = np.unique(np.column_stack([codes, slide_codes]), axis=0) if len(codes) else np.zeros((0, 2), int)
        self.patients.obs[N_SLIDES_KEY] = np.bincount(pairs[:, 0], minlength=self.patients.n_obs).astype(np.int64)
        self.patients.obs[N_INSTANCES_KEY] = counts.astype(np.int64)
        self.splits = _check_splits(splits, self.patients.obs_names)

    # ----- sizes -----
    @property
    def n_patients(self) -> int:
        """Number of patients."""
        return int(self.patients.n_obs)

    @property
    def n_instances(self) -> int:
        """Number of instances (regions / patches) over all patients."""
        return int(self.instances.n_obs)

    @property
    def n_features(self) -> int:
        """Instance feature dimension."""
        return int(self.instances.n_vars)

    @property
    def n_folds(self) -> int:
        """Number of cross-validation folds (0 without splits)."""
        return 0 if self.splits is None else int(self.splits.shape[1])

    def __len__(self) -> int:
        return self.n_patients

    # ----- access -----
    def _positions(self, cases: str | Iterable[str] | None, *, unique: bool = False) -> np.ndarray:
        """Row positions of ``cases`` in ``patients`` (all, in order, for ``None``)."""
        if cases is None:
            return np.arange(self.n_patients)
        if isinstance(cases, str):
            cases = [cases]
        cases = [str(c) for c in np.asarray(list(cases), dtype=object).ravel()]
        pos = self.patients.obs_names.get_indexer(cases)
        if (pos < 0).any():
            missing = [c for c, p in zip(cases, pos, strict=True) if p < 0]
            raise ValueError(f"`cases`: {len(missing)} case id(s) not in cohort {self.name!r}: {_shown(missing)}.")
        if unique and len(set(cases)) != len(cases):
            dup = pd.Index(cases)[pd.Index(cases).duplicated()].unique()
            raise ValueError(f"`cases` lists case id(s) more than once: {_shown(dup)}.")
        return pos

    def bags(self, cases: str | Iterable[str] | None = None) -> list[np.ndarray]:
        """Instance features of each patient, ``(n_instances_i, n_features)`` float32, in ``cases`` order.

        The arrays are views into ``instances.X`` (no copy): copy one before changing it in place.

        Parameters
        ----------
        cases
            Case ids (default: every patient, in ``patients`` order).
        """
        x = self.instances.X
        off = self._offsets
        return [x[off[i] : off[i + 1]] for i in self._positions(cases)]

    def fold(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(train case ids, test case ids)`` of fold ``k``, each in ``patients`` order.

        Parameters
        ----------
        k
            Fold number, ``0 <= k < n_folds``.
        """
        if self.splits is None:
            raise ValueError(
                f"Cohort {self.name!r} has no cross-validation splits; pass `splits=` (a folder of "
                "splits_<k>.csv files) to `hs.io.read_cohort`, or a DataFrame to `Cohort(..., splits=)`."
            )
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= int(k) < self.n_folds:
            raise ValueError(f"`k` must be an integer in 0..{self.n_folds - 1} (cohort {self.name!r} has "
                             f"{self.n_folds} folds), got {k!r}.")
        col = self.splits[f"fold_{int(k)}"].to_numpy()
        names = self.patients.obs_names.to_numpy()
        return names[col == "train"], names[col == "test"]

    def subset(self, cases: str | Iterable[str]) -> Cohort:
        """A new cohort of the patients ``cases`` (in that order) with their instances and splits.

        Parameters
        ----------
        cases
            Case ids, each at most once.
        """
        pos = self._positions(cases, unique=True)
        if len(pos) == 0:
            raise ValueError("`cases` is empty; a cohort needs at least one patient.")
        starts, lengths = self._offsets[pos], np.diff(self._offsets)[pos]
        shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        rows = np.arange(int(lengths.sum())) + shift
        splits = None if self.splits is None else self.splits.iloc[pos]
        return Cohort(self.patients[pos].copy(), self.instances[rows].copy(), splits=splits, name=self.name)

    # ----- files -----
    def write(self, path: PathLike, *, overwrite: bool = False) -> None:
        """Write the cohort to the folder ``path`` (``patients.h5ad``, ``instances.h5ad``, ``splits.csv``).

        The folder is written under a temporary name and renamed into place, so an interrupted write leaves any
        earlier copy intact.

        Parameters
        ----------
        path
            Destination folder.
        overwrite
            Replace an existing ``path`` (otherwise it is an error).
        """
        path = Path(path)
        with atomic_path(path, overwrite=overwrite, what="path") as tmp:
            clean_stale(path, keep=tmp)
            tmp.mkdir()
            self.patients.write_h5ad(tmp / _FILES["patients"])
            self.instances.write_h5ad(tmp / _FILES["instances"])
            if self.splits is not None:
                self.splits.to_csv(tmp / _FILES["splits"], index_label=CASE_KEY)
        logger.info("wrote cohort %r (%d patients) to %s", self.name, self.n_patients, path)

    @classmethod
    def read(cls, path: PathLike) -> Cohort:
        """Read a cohort written by :meth:`write`.

        Parameters
        ----------
        path
            The folder :meth:`write` created.
        """
        import anndata as ad

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"`path`: {str(path)!r} is not a folder written by `Cohort.write`.")
        for key in ("patients", "instances"):
            if not (path / _FILES[key]).is_file():
                raise FileNotFoundError(f"`path`: {str(path)!r} has no {_FILES[key]}; it is not a cohort folder.")
        patients = ad.read_h5ad(path / _FILES["patients"])
        instances = ad.read_h5ad(path / _FILES["instances"])
        splits = None
        if (path / _FILES["splits"]).is_file():
            splits = pd.read_csv(path / _FILES["splits"], index_col=0, dtype=str, keep_default_na=False)
        meta = patients.uns.get("hist_sd", {})
        return cls(patients, instances, splits=splits, name=str(meta.get("cohort") or path.name))

    def __repr__(self) -> str:
        omic = self.patients.var["omic"].value_counts()
        kinds = ", ".join(f"{o} {omic[o]}" for o in [*OMICS, "other"] if o in omic.index)
        n_fam = len(self.patients.uns["hist_sd"]["families"])
        lines = [
            f"Cohort {self.name!r}: {self.n_patients} patients, {self.n_instances} instances x {self.n_features} "
            f"features, {self.n_folds} folds",
            f"    patients: {self.patients.n_vars} genomic columns" + (f" ({kinds})" if kinds else "")
            + f", {n_fam} families, {int(self.patients.obs[EVENT_KEY].sum())} events",
            "    patients.obs: " + ", ".join(repr(c) for c in self.patients.obs.columns),
            "    instances.obs: " + ", ".join(repr(c) for c in self.instances.obs.columns),
        ]
        if len(self.instances.obsm):
            lines.append("    instances.obsm: " + ", ".join(repr(k) for k in self.instances.obsm))
        return "\n".join(lines)


# ----- validation -----
def _binary(values: pd.Series, what: str, index: pd.Index) -> np.ndarray:
    """0/1 (or bool) values as int64; anything else is an error naming the cases."""
    num = pd.to_numeric(values.astype(object) if values.dtype == bool else values, errors="coerce")
    num = num.astype(float).to_numpy()
    bad = ~np.isin(num, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"`patients.obs[{what!r}]` must be 0 or 1; invalid for case(s) {_shown(index[bad])}.")
    return num.astype(np.int64)


def _check_survival(obs: pd.DataFrame) -> pd.DataFrame:
    """``survival_months`` float64 (finite, >= 0), ``censorship`` int64 and ``event`` bool, consistent."""
    if TIME_KEY not in obs.columns:
        raise ValueError(f"`patients.obs` needs a {TIME_KEY!r} column (survival time in months).")
    if CENSORSHIP_KEY not in obs.columns and EVENT_KEY not in obs.columns:
        raise ValueError(f"`patients.obs` needs a {CENSORSHIP_KEY!r} column (1 = censored) or an {EVENT_KEY!r} "
                         "column (1 = death observed).")
    time = pd.to_numeric(obs[TIME_KEY], errors="coerce").astype(float).to_numpy()
    bad = ~np.isfinite(time) | (time < 0)
    if bad.any():
        raise ValueError(f"`patients.obs[{TIME_KEY!r}]` must be finite and >= 0; invalid for case(s) "
                         f"{_shown(obs.index[bad])}.")
    cens = _binary(obs[CENSORSHIP_KEY], CENSORSHIP_KEY, obs.index) if CENSORSHIP_KEY in obs.columns else None
    event = _binary(obs[EVENT_KEY], EVENT_KEY, obs.index) if EVENT_KEY in obs.columns else None
    if cens is None:
        cens = 1 - event
    elif event is not None and (event != 1 - cens).any():
        raise ValueError(f"`patients.obs[{EVENT_KEY!r}]` must equal 1 - {CENSORSHIP_KEY!r}; they disagree for "
                         f"case(s) {_shown(obs.index[event != 1 - cens])}.")
    obs[TIME_KEY] = time
    obs[CENSORSHIP_KEY] = cens
    obs[EVENT_KEY] = (1 - cens).astype(bool)
    return obs


def _check_patients(patients: AnnData, name: str) -> AnnData:
    """A validated copy of ``patients``: survival columns, float32 genomics, ``var`` and ``uns`` annotations."""
    if not isinstance(patients, AnnData):
        raise TypeError(f"`patients` must be an AnnData (one row per case), got {type(patients).__name__}.")
    if patients.n_obs == 0:
        raise ValueError("`patients` has no rows; a cohort needs at least one patient.")
    if not patients.obs_names.is_unique:
        dup = patients.obs_names[patients.obs_names.duplicated()].unique()
        raise ValueError(f"`patients.obs_names` (case ids) are not unique: {_shown(dup)}.")
    x = patients.X
    x = np.zeros((patients.n_obs, patients.n_vars), np.float32) if x is None else x
    x = np.asarray(x.toarray() if sparse.issparse(x) else x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"`patients.X` (genomics) must be numeric, got dtype {x.dtype}.")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        cols = patients.var_names[~np.isfinite(x).all(axis=0)]
        raise ValueError(f"`patients.X` (genomics) has NaN or infinite values in column(s) {_shown(cols)}; drop "
                         "or impute them first.")
    out = patients.copy()  # keeps obsm, layers, obsp of the caller's table
    out.X = x
    out.obs = _check_survival(out.obs.copy())
    out.obs_names = out.obs_names.astype(str)
    missing_var = [c for c in ("gene", "omic", "family") if c not in out.var.columns]
    if missing_var or "families" not in out.varm:
        var, member = genomic_var(list(out.var_names))
        for c in missing_var:
            out.var[c] = var[c].to_numpy()
        if "families" not in out.varm:
            out.varm["families"] = member
    meta = dict(out.uns.get("hist_sd", {}))
    meta["cohort"] = name
    if not isinstance(out.varm["families"], pd.DataFrame):
        raise TypeError("`patients.varm['families']` must be a bool DataFrame (genomic columns x gene families).")
    meta["families"] = [str(f) for f in out.varm["families"].columns]
    meta["genomics_source"] = str(meta.get("genomics_source", ""))
    meta["dropped"] = {str(k): int(v) for k, v in dict(meta.get("dropped", {})).items()}
    out.uns["hist_sd"] = meta
    return out


def _check_instances(instances: AnnData, patients: AnnData) -> tuple[AnnData, np.ndarray]:
    """A validated ``instances`` grouped in ``patients`` order, and the row offsets of each patient's bag."""
    if not isinstance(instances, AnnData):
        raise TypeError(f"`instances` must be an AnnData (one row per region/patch), got {type(instances).__name__}.")
    if CASE_KEY not in instances.obs.columns:
        raise ValueError(f"`instances.obs` needs a {CASE_KEY!r} column naming each instance's patient.")
    x = instances.X
    if x is None or sparse.issparse(x):
        raise TypeError("`instances.X` must be a dense 2-D float array of instance features.")
    x = np.asarray(x)
    if x.ndim != 2 or x.dtype.kind != "f" or x.shape[1] == 0:
        raise ValueError(f"`instances.X` must be a 2-D float array with >= 1 feature, got shape {x.shape} and "
                         f"dtype {x.dtype}.")
    if not np.isfinite(x).all():
        rows = instances.obs_names[~np.isfinite(x).all(axis=1)]
        raise ValueError(f"`instances.X` has NaN or infinite features in row(s) {_shown(rows)}.")
    case = instances.obs[CASE_KEY].astype(str).to_numpy()
    codes = patients.obs_names.get_indexer(case)
    if (codes < 0).any():
        raise ValueError(f"`instances.obs[{CASE_KEY!r}]` names case(s) that are not patients: "
                         f"{_shown(pd.unique(case[codes < 0]))}.")
    counts = np.bincount(codes, minlength=patients.n_obs)
    if (counts == 0).any():
        raise ValueError(f"a bag with no instances: patient(s) {_shown(patients.obs_names[counts == 0])} have no "
                         "row in `instances`; drop them from `patients` or add their features.")
    src = instances
    if len(codes) > 1 and (np.diff(codes) < 0).any():
        perm = np.argsort(codes, kind="stable")
        src, case = instances[perm].copy(), case[perm]
        x = np.asarray(src.X)
    obs = src.obs.copy()
    slide = obs[SLIDE_KEY].astype(str).to_numpy() if SLIDE_KEY in obs.columns else case
    obs[CASE_KEY] = pd.Categorical(case, categories=patients.obs_names)
    obs[SLIDE_KEY] = pd.Categorical(slide, categories=pd.unique(slide))
    if "spatial" in src.obsm and np.shape(src.obsm["spatial"])[1:] != (2,):
        raise ValueError(f"`instances.obsm['spatial']` must have shape (n, 2), got {np.shape(src.obsm['spatial'])}.")
    out = AnnData(X=x.astype(np.float32, copy=False), obs=obs, var=src.var.copy(), obsm=dict(src.obsm.items()),
                  layers=dict(src.layers.items()), obsp=dict(src.obsp.items()), varm=dict(src.varm.items()),
                  uns=copy.deepcopy(dict(src.uns)))
    return out, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _check_splits(splits: pd.DataFrame | None, cases: pd.Index) -> pd.DataFrame | None:
    """``splits`` indexed by ``cases`` (missing ones ``""``), columns ``fold_0..``, values train/test/""."""
    if splits is None:
        return None
    if not isinstance(splits, pd.DataFrame):
        raise TypeError(f"`splits` must be a DataFrame (case ids x folds) or None, got {type(splits).__name__}.")
    k = splits.shape[1]
    expected = [f"fold_{i}" for i in range(k)]
    if k == 0 or [str(c) for c in splits.columns] != expected:
        raise ValueError(f"`splits` columns must be 'fold_0' … 'fold_{{K-1}}' in order, got {list(splits.columns)}.")
    index = splits.index.astype(str)
    if not index.is_unique:
        raise ValueError(f"`splits` lists case id(s) more than once: {_shown(index[index.duplicated()].unique())}.")
    extra = index[~index.isin(cases)]
    if len(extra):
        raise ValueError(f"`splits` has case id(s) that are not patients of the cohort: {_shown(extra)}.")
    out = splits.copy()
    out.index, out.columns = index, expected
    out = out.reindex(cases).fillna("").astype(str)
    bad = ~out.isin(SPLIT_VALUES)
    if bad.to_numpy().any():
        raise ValueError(f"`splits` values must be 'train', 'test' or '' (not in the fold), got "
                         f"{_shown(pd.unique(out.to_numpy()[bad.to_numpy()]))}.")
    out.index = out.index.rename(CASE_KEY)  # a new Index: never rename the patients' one in place
    return out


# ----- slide feature files -----
def _as_features(path: Path, feats: Any, coords: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Check one file's features (``[M, D]`` or ``[1, M, D]``, float, finite, M >= 1) and coords (``[M, 2]``)."""
    feats = np.asarray(feats)
    if feats.ndim == 3 and feats.shape[0] == 1:
        feats = feats[0]
    if feats.ndim != 2:
        raise ValueError(f"{str(path)!r}: features must have shape [M, D] (or [1, M, D]), got {list(feats.shape)}.")
    if feats.dtype.kind != "f":
        raise ValueError(f"{str(path)!r}: features must be floats, got dtype {feats.dtype}.")
    if feats.shape[0] == 0 or feats.shape[1] == 0:
        raise ValueError(f"{str(path)!r}: the feature file is empty (shape {list(feats.shape)}); a slide needs "
                         ">= 1 instance with >= 1 feature.")
    feats = feats.astype(np.float32, copy=False)
    if not np.isfinite(feats).all():
        raise ValueError(f"{str(path)!r}: features hold NaN or infinite values.")
    if coords is not None:
        coords = np.asarray(coords)
        if coords.ndim == 3 and coords.shape[0] == 1:
            coords = coords[0]
        if coords.shape != (feats.shape[0], 2):
            raise ValueError(f"{str(path)!r}: coords must have shape [{feats.shape[0]}, 2] (one (x, y) per feature "
                             f"row), got {list(coords.shape)}.")
        coords = coords.astype(np.float64, copy=False)
    return feats, coords


def _load_pt(path: Path) -> tuple[Any, Any]:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for unreadable or unsafe pickles
        raise ValueError(f"{str(path)!r}: not a readable torch tensor file ({err}).") from err
    coords = None
    if isinstance(obj, Mapping):
        if "features" not in obj:
            raise ValueError(f"{str(path)!r}: a dict without a 'features' entry (keys {sorted(map(str, obj))}).")
        obj, coords = obj["features"], obj.get("coords")
    if not isinstance(obj, torch.Tensor):
        raise ValueError(f"{str(path)!r}: expected a tensor (or a dict with 'features'), got {type(obj).__name__}.")
    feats = obj.detach().cpu()
    feats = (feats.float() if feats.is_floating_point() else feats).numpy()
    if isinstance(coords, torch.Tensor):
        coords = coords.detach().cpu().numpy()
    return feats, coords


def _load_h5(path: Path) -> tuple[Any, Any]:
    import h5py

    with h5py.File(path, "r") as f:
        if "features" not in f:
            raise ValueError(f"{str(path)!r}: no 'features' dataset (it has {sorted(f.keys())}).")
        return f["features"][()], (f["coords"][()] if "coords" in f else None)


def read_slide_features(path: PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """One slide's instance features, in the CLAM / TRIDENT file conventions.

    ``<slide_id>.pt``: a float tensor ``[M, D]`` (or a dict with ``"features"`` and optional ``"coords"``),
    loaded with ``torch.load(weights_only=True)``; ``<slide_id>.h5``: a ``"features"`` dataset ``[M, D]`` or
    ``[1, M, D]`` and an optional ``"coords"`` dataset ``[M, 2]``.

    Parameters
    ----------
    path
        The ``.pt`` or ``.h5`` file.

    Returns
    -------
    ``(features, coords)``: float32 ``[M, D]`` (M >= 1, finite) and float64 ``[M, 2]`` or ``None``.

    Examples
    --------
    >>> import h5py, numpy as np, tempfile, os, hist_sd as hs
    >>> f = os.path.join(tempfile.mkdtemp(), "slide.h5")
    >>> with h5py.File(f, "w") as h:
    ...     h["features"] = np.ones((3, 8), np.float32)
    >>> x, xy = hs.io.read_slide_features(f)
    >>> x.shape, xy is None
    ((3, 8), True)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path`: slide feature file {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        feats, coords = _load_pt(path)
    elif suffix in (".h5", ".hdf5"):
        feats, coords = _load_h5(path)
    else:
        raise ValueError(f"`path`: {str(path)!r} has an unknown suffix {path.suffix!r}; expected .pt or .h5.")
    return _as_features(path, feats, coords)


def feature_files(folder: PathLike) -> dict[str, Path]:
    """``{slide_id: file}`` of the ``.h5`` / ``.pt`` files in ``folder`` (an ``.h5`` wins over a ``.pt``).

    A folder with no such files but CLAM's ``h5_files/`` or ``pt_files/`` subfolders is read from those.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"`features`: {str(folder)!r} is not a folder of per-slide feature files.")
    found: dict[str, Path] = {}
    for suffix in (".pt", ".hdf5", ".h5"):  # later suffixes win
        found.update({p.name[: -len(suffix)]: p for p in folder.iterdir() if p.name.lower().endswith(suffix)})
    if not found:
        for sub in ("pt_files", "h5_files"):
            if (folder / sub).is_dir():
                found.update(feature_files(folder / sub))
    return found


# ----- tables -----
def _is_ignored(column: str) -> bool:
    return column.startswith("Unnamed:") or column == "train"


def read_signatures(path: PathLike) -> dict[str, list[str]]:
    """Gene families of a signatures CSV (columns = family names, rows = genes, blank cells padding)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`signatures`: {str(path)!r} does not exist.")
    df = pd.read_csv(path, dtype=str)
    out = {str(c).strip(): list(dict.fromkeys(g.strip() for g in df[c].dropna() if g.strip())) for c in df.columns}
    if not out:
        raise ValueError(f"`signatures`: {str(path)!r} has no columns (one column per gene family expected).")
    return out


def _read_table(table: PathLike, time_key: str, censorship_key: str) -> pd.DataFrame:
    """The slide table with string ``case_id``/``slide_id`` (no ``.svs``) and the survival columns checked."""
    path = Path(table)
    if not path.is_file():
        raise FileNotFoundError(f"`table`: {str(path)!r} does not exist.")
    df = pd.read_csv(path, low_memory=False)
    for col, arg in ((CASE_KEY, None), (SLIDE_KEY, None), (time_key, "time_key"), (censorship_key, "censorship_key")):
        if col not in df.columns:
            how = f" (set `{arg}`)" if arg else ""
            raise ValueError(f"`table` {str(path)!r} has no {col!r} column{how}; columns start "
                             f"{_shown(df.columns, 12)}.")
    df = df.loc[:, [c for c in df.columns if not _is_ignored(str(c))]]
    df[CASE_KEY] = df[CASE_KEY].astype(str)
    df[SLIDE_KEY] = df[SLIDE_KEY].astype(str).str.replace(r"\.svs$", "", regex=True)
    if df[SLIDE_KEY].duplicated().any():
        dup = df[SLIDE_KEY][df[SLIDE_KEY].duplicated()].unique()
        raise ValueError(f"`table` lists slide(s) more than once: {_shown(dup)}.")
    return df


def _first_rows(df: pd.DataFrame, check: Sequence[str], genomic: Sequence[str]) -> pd.DataFrame:
    """One row per case (its first slide's); survival must agree across a case's slides, genomics should."""
    first = ~df[CASE_KEY].duplicated()
    if first.all():
        return df
    ref = df.loc[first].set_index(CASE_KEY)
    for cols, fatal in ((list(check), True), (list(genomic), False)):
        if not cols:
            continue
        a = df[cols].to_numpy()
        b = ref.loc[df[CASE_KEY], cols].to_numpy()
        same = (a == b) | (pd.isna(a) & pd.isna(b))
        bad = pd.unique(df[CASE_KEY].to_numpy()[~same.all(axis=1)])
        if len(bad) and fatal:
            raise ValueError(f"`table`: the slides of case(s) {_shown(bad)} disagree on {cols}.")
        if len(bad):
            logger.warning("`table`: the slides of %d case(s) (%s) have different genomic values; the first "
                           "slide's row is used.", len(bad), _shown(bad, 5))
    return df.loc[first]


def _load_slides(files: Sequence[Path], progress: bool) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Read every file; all must share one feature dimension."""
    feats: list[np.ndarray] = []
    coords: list[np.ndarray | None] = []
    dim = None
    for f in _progress(files, enabled=progress, desc="slides", total=len(files)):
        x, xy = read_slide_features(f)
        if dim is None:
            dim, first = x.shape[1], f
        elif x.shape[1] != dim:
            raise ValueError(f"`features`: {str(f)!r} has {x.shape[1]} features per instance but {str(first)!r} "
                             f"has {dim}; every slide file of a cohort must have the same dimension.")
        feats.append(x)
        coords.append(xy)
    return feats, coords


def read_splits(folder: PathLike, cases: pd.Index) -> tuple[pd.DataFrame, int]:
    """Folds of ``splits_<k>.csv`` files (``train`` / ``val`` columns; ``val`` is the test fold).

    Returns the splits DataFrame over ``cases`` and the number of distinct split case ids not in ``cases``.
    Other columns (e.g. a ``test`` column) are ignored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"`splits`: {str(folder)!r} is not a folder of splits_<k>.csv files.")
    files = {int(m.group(1)): p for p in folder.iterdir() if (m := re.fullmatch(r"splits_(\d+)\.csv", p.name))}
    if not files:
        raise FileNotFoundError(f"`splits`: {str(folder)!r} holds no splits_<k>.csv file.")
    if sorted(files) != list(range(len(files))):
        raise ValueError(f"`splits`: the fold files of {str(folder)!r} must be numbered 0..K-1, got {sorted(files)}.")
    out = pd.DataFrame("", index=cases, columns=[f"fold_{k}" for k in range(len(files))])
    unknown: set[str] = set()
    for k in range(len(files)):
        df = pd.read_csv(files[k], dtype=str)
        if "train" not in df.columns or "val" not in df.columns:
            raise ValueError(f"`splits`: {str(files[k])!r} needs 'train' and 'val' columns, got {list(df.columns)}.")
        train, test = set(df["train"].dropna()), set(df["val"].dropna())
        if train & test:
            raise ValueError(f"`splits`: {str(files[k])!r} puts case(s) in both train and val: "
                             f"{_shown(sorted(train & test))}.")
        unknown |= (train | test) - set(cases)
        out.loc[out.index.isin(train), f"fold_{k}"] = "train"
        out.loc[out.index.isin(test), f"fold_{k}"] = "test"
    return out, len(unknown)


def _within(sizes: Sequence[int]) -> np.ndarray:
    """``0..n_i-1`` for each size ``n_i``, concatenated."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def _drop(dropped: dict[str, int], key: str, n: int, what: str, examples: Iterable[Any] = ()) -> None:
    dropped[key] = int(n)
    if n:
        shown = list(examples)
        logger.info("read_cohort: dropped %d %s%s", n, what, f" ({_shown(shown, 5)})" if shown else "")


def read_cohort(
    features: PathLike,
    table: PathLike,
    *,
    splits: PathLike | None = None,
    signatures: PathLike | None = None,
    name: str | None = None,
    time_key: str = TIME_KEY,
    censorship_key: str = CENSORSHIP_KEY,
    progress: bool = False,
) -> Cohort:
    """A survival cohort from per-slide feature files and a MCAT / PORPOISE-style table.

    Each row of ``table`` is a slide (``case_id``, ``slide_id`` with or without ``.svs``, survival time,
    censorship, clinical and genomic columns); each patient's bag concatenates the instances of its slides
    that have a feature file ``<features>/<slide_id>.pt`` or ``.h5`` (:func:`read_slide_features`).
    Patient-level values (survival, clinical, genomics) come from a case's first slide row: survival and
    censorship must agree across its slides (else an error); genomics that differ are logged and the first
    row wins. Genomic columns end in ``_rnaseq``, ``_cnv`` or ``_mut``; ``Unnamed: *`` and ``train`` columns
    are ignored; every other column is clinical (``patients.obs``, strings as categories).

    Dropped, each counted in one INFO log line and in ``patients.uns["hist_sd"]["dropped"]``: slides without
    a feature file (``slides_without_features``), patients left with no feature file
    (``patients_without_features``), patients with a missing or invalid time or censorship
    (``patients_invalid_survival``), genomic columns with any NaN among the kept patients
    (``genomic_columns_with_nan``), and case ids of the split files that are not in the cohort
    (``split_cases_not_in_cohort``).

    Parameters
    ----------
    features
        Folder of per-slide files (or one with CLAM's ``h5_files/`` / ``pt_files/``). Slide files not in the
        table are ignored. All must have one feature dimension.
    table
        CSV (or ``.csv.zip``) with one row per slide.
    splits
        Folder of ``splits_<k>.csv`` files with ``train`` and ``val`` columns of case ids (``val`` is the
        reported test fold, as in MCAT / PORPOISE).
    signatures
        CSV of gene families (one column per family, genes below) for ``var["family"]`` and
        ``varm["families"]``.
    name
        Cohort name (default: the table's file name without ``.csv`` / ``.zip``).
    time_key
        Survival time column of ``table`` (months); stored as ``obs["survival_months"]``.
    censorship_key
        Censorship column of ``table`` (1 = censored); stored as ``obs["censorship"]``, ``obs["event"]`` = 1 - it.
    progress
        Show a progress bar over slide files.

    Returns
    -------
    The :class:`Cohort`; ``patients.uns["hist_sd"]["genomics_source"]`` is the table's file name.

    Long: one linear recipe (table, files, drops, bags, genomics, splits) reads best in one place.
    """
    table_path = Path(table)
    name = name or re.sub(r"(\.csv)?(\.zip)?$", "", table_path.name)
    df = _read_table(table_path, time_key, censorship_key)
    files = feature_files(features)
    fams = read_signatures(signatures) if signatures is not None else {}
    dropped: dict[str, int] = {}

    has_file = df[SLIDE_KEY].isin(files.keys())
    _drop(dropped, "slides_without_features", (~has_file).sum(), "slide(s) of the table without a feature file",
          df.loc[~has_file, SLIDE_KEY])
    no_feat = pd.Index(pd.unique(df[CASE_KEY])).difference(pd.unique(df.loc[has_file, CASE_KEY]), sort=False)
    _drop(dropped, "patients_without_features", len(no_feat), "patient(s) with no feature file at all", no_feat)
    example = (str(df[SLIDE_KEY].iloc[0]) if len(df) else "none", next(iter(files), "none"))
    df = df.loc[has_file]

    genomic = [c for c in df.columns if _omic_of(str(c))]
    reserved = {CASE_KEY, SLIDE_KEY, time_key, censorship_key, TIME_KEY, CENSORSHIP_KEY, EVENT_KEY, N_SLIDES_KEY,
                N_INSTANCES_KEY}  # the table's own copies of the derived columns are not kept
    clinical = [c for c in df.columns if c not in genomic and c not in reserved]
    rows = _first_rows(df, [time_key, censorship_key], genomic)
    time = pd.to_numeric(rows[time_key], errors="coerce").to_numpy(dtype=float)
    cens = pd.to_numeric(rows[censorship_key], errors="coerce").to_numpy(dtype=float)
    valid = np.isfinite(time) & (time >= 0) & np.isin(cens, (0.0, 1.0))
    _drop(dropped, "patients_invalid_survival", (~valid).sum(), "patient(s) with missing or invalid survival "
          f"({time_key!r} finite >= 0, {censorship_key!r} 0/1)", rows.loc[~valid, CASE_KEY])
    rows = rows.loc[valid]
    cases = pd.Index(rows[CASE_KEY].to_numpy(), name=None)
    if not len(cases):
        raise ValueError(f"`features`/`table`: no patient is left ({int(has_file.sum())} slide(s) of the table have a "
                         f"feature file; table slide ids look like {example[0]!r}, files like {example[1]!r}).")

    gen = rows[genomic].copy() if genomic else pd.DataFrame(index=rows.index)
    for c in gen.columns[[not pd.api.types.is_numeric_dtype(t) for t in gen.dtypes]]:
        gen[c] = pd.to_numeric(gen[c], errors="coerce")
    nan_cols = gen.columns[gen.isna().any(axis=0).to_numpy()]
    _drop(dropped, "genomic_columns_with_nan", len(nan_cols), "genomic column(s) with missing values", nan_cols)
    gen = gen.drop(columns=nan_cols)

    split_df, n_unknown = (None, 0) if splits is None else read_splits(splits, cases)
    _drop(dropped, "split_cases_not_in_cohort", n_unknown, "case id(s) of the split files not in the cohort")

    slides = df.loc[df[CASE_KEY].isin(cases)]
    slides = slides.iloc[np.argsort(cases.get_indexer(slides[CASE_KEY]), kind="stable")]
    feats, coords = _load_slides([files[s] for s in slides[SLIDE_KEY]], progress)
    sizes = [len(x) for x in feats]
    slide_ids = np.repeat(slides[SLIDE_KEY].to_numpy(), sizes)
    inst_obs = pd.DataFrame(
        {CASE_KEY: np.repeat(slides[CASE_KEY].to_numpy(), sizes), SLIDE_KEY: slide_ids},
        index=pd.Index(slide_ids.astype(object) + "_" + _within(sizes).astype(str).astype(object)),
    )
    instances = AnnData(X=np.concatenate(feats, axis=0), obs=inst_obs)
    instances.var_names = [f"f{i}" for i in range(instances.n_vars)]
    if all(c is not None for c in coords):
        instances.obsm["spatial"] = np.concatenate(coords, axis=0)
    elif any(c is not None for c in coords):
        logger.warning("read_cohort: only some slide files have coords; obsm['spatial'] is left out.")

    var, member = genomic_var(list(gen.columns), fams)
    obs = rows.set_index(CASE_KEY)[clinical].copy()
    obs.index = cases
    for c in obs.columns:
        if obs[c].dtype == object:
            obs[c] = pd.Categorical(obs[c].astype("string").to_numpy(dtype=object, na_value=np.nan))
    obs.insert(0, TIME_KEY, time[valid])
    obs.insert(1, CENSORSHIP_KEY, cens[valid].astype(np.int64))
    obs.insert(1, EVENT_KEY, cens[valid] == 0)
    patients = AnnData(X=gen.to_numpy(dtype=np.float32), obs=obs, var=var, varm={"families": member})
    patients.uns["hist_sd"] = {"cohort": name, "families": list(fams), "genomics_source": table_path.name,
                               "dropped": {k: dropped.get(k, 0) for k in DROPS}}
    cohort = Cohort(patients, instances, splits=split_df, name=name)
    logger.info("read_cohort %r: %d patients, %d slides, %d instances x %d features, %d genomic columns, %d folds",
                name, cohort.n_patients, len(slides), cohort.n_instances, cohort.n_features, patients.n_vars,
                cohort.n_folds)
    return cohort
