"""Tumour labels from expression: CNV inference against non-malignant spots, then spatial smoothing.

HiST trains its segmentation head on labels derived from expression (Cottrazm-like), not from a pathologist.
:func:`tumor_labels` computes such labels for one section of raw counts with infercnvpy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from hist_sd import _constants as C
from hist_sd._core._data import resolve
from hist_sd._core._expr import counts_matrix, log_normalize
from hist_sd._core._grid import assign_grid, neighbours, pick_layout
from hist_sd._core._params import check_key_free, input_keys, log_written, store_params
from hist_sd._core._runtime import set_seed
from hist_sd._docs import doc_params

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

__all__ = ["EPITHELIAL_MARKERS", "IMMUNE_MARKERS", "STROMAL_MARKERS", "tumor_labels"]

#: Immune cell markers (T, B, plasma cells, myeloid), counted as evidence for non-malignant tissue.
IMMUNE_MARKERS: tuple[str, ...] = (
    "PTPRC", "CD3E", "CD3D", "CD2", "CD79A", "MS4A1", "CD74", "HLA-DRA", "LYZ", "CD68",
    "IGKC", "IGHG1", "IGHM", "JCHAIN", "MZB1",
)  # fmt: skip
#: Fibroblast, extracellular-matrix and adipocyte markers, counted as evidence for non-malignant tissue.
STROMAL_MARKERS: tuple[str, ...] = (
    "LUM", "DCN", "COL1A1", "COL1A2", "COL3A1", "FBLN1", "PDGFRB", "SFRP2",
    "ADIPOQ", "PLIN1", "FABP4", "LEP", "CD36", "CFD",
)  # fmt: skip
#: (Malignant) epithelial markers, counted as evidence against non-malignant tissue.
EPITHELIAL_MARKERS: tuple[str, ...] = (
    "EPCAM", "KRT8", "KRT18", "KRT19", "ERBB2", "CDH1", "KRT7", "GRB7", "MUC1", "CLDN4",
)  # fmt: skip

#: Fewer spots than this make CNV inference and the reference rule meaningless.
MIN_SPOTS = 30
#: At least this many of the data's genes need a genomic position (infercnvpy averages windows of genes).
MIN_GENES = C.MIN_CNV_GENES
#: At least this many spots in the reference.
MIN_REFERENCE = 5
#: Genes detected in fewer spots are left out of the CNV inference.
MIN_GENE_SPOTS = 3
#: Each marker set needs at least this many of its genes detected for the automatic reference.
MIN_MARKERS = 3

# The recipe's fixed choices (set by hand). hist_sd._bench_tumor.run_tumor_labels_cv tunes all but EPITHELIAL_WEIGHT,
# with window_size, reference_fraction, smooth and n_clusters, on six of her2st's seven pathologist-labelled
# sections and scores the seventh: no tuned setting beat these defaults on the held-out sections.
#: Weight of the epithelial markers (against immune + stromal ones) in the non-malignant marker score.
EPITHELIAL_WEIGHT = 2.0
#: infercnvpy's noise filter: CNV values below this many standard deviations (of the section's profiles) become 0.
DYNAMIC_THRESHOLD: float | None = 1.5
#: Which spots form the tumour core: "auto" (lowest marker score, or strongest CNV without epithelial markers),
#: "marker" or "cnv".
CORE_RULE = "auto"
#: Weight of the (squashed, sign-flipped) marker score in the tumour score; the rest is the CNV correlation.
MARKER_WEIGHT = 0.0
#: A CNV cluster is tumour when its mean score is above this point between the reference's and the core's mean.
CALL_THRESHOLD = 0.5

_CNV_KEY = "cnv"  # infercnvpy's own convention: obsm["X_cnv"], uns["cnv"]["chr_pos"]
_REF_COL = "_hist_sd_reference"


@doc_params
def tumor_labels(
    data: AnnData | SpatialData,
    *,
    reference: Sequence[Any] | np.ndarray | pd.Series | str | None = None,
    reference_key: str | None = None,
    gene_positions: pd.DataFrame | None = None,
    genome: str = "hg38",
    window_size: int = 100,
    n_clusters: int | None = None,
    smooth: bool = True,
    reference_fraction: float = 0.2,
    layer: str | None = None,
    layout: str = "auto",
    key_added: str = C.TUMOR,
    table_key: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> None:
    """Label tumour spots of one section from its expression (copy-number inference, Cottrazm-like).

    The steps:

    1. A copy of the raw counts is normalised to log1p counts per million (the caller's data is not
       changed); genes detected in fewer than 3 spots are left out and genes are placed on the genome.
    2. A reference of non-malignant spots is taken from ``reference`` / ``reference_key``, or found
       automatically: every spot gets a *non-malignant marker score* = mean z-score of
       :data:`IMMUNE_MARKERS` + mean z-score of :data:`STROMAL_MARKERS` (fibroblast, matrix, adipocyte)
       − 2 × mean z-score of :data:`EPITHELIAL_MARKERS`; the ``reference_fraction`` of spots with the highest
       score form the reference. Spots of legacy ST and Visium are mixtures, and many sections are mostly
       tumour, so a per-spot quantile is used rather than whole expression clusters (whose most stromal
       cluster is often half tumour; see ``benchmarks/tumor_labels.py``).
    3. :func:`infercnvpy.tl.infercnv` against the reference gives a CNV profile per spot (``obsm["X_cnv"]``;
       its noise filter, values within 1.5 standard deviations of 0 set to 0, uses the whole section's deviation).
    4. The tumour's CNV profile is the mean profile of a *tumour core* (the ``reference_fraction`` of the
       other spots with the lowest marker score, or, without epithelial markers, the strongest CNV
       signal) minus the reference's mean profile. A spot's CNV score is the Pearson correlation of its
       profile with the tumour profile; with ``smooth`` it is averaged over the spot and its grid neighbours
       (the 8 around it on a square grid, the 6 of Visium's hexagonal one) into ``obs["{key_added}_score"]``.
    5. The CNV profiles are clustered (k-means on their first principal components); a cluster is called
       tumour when its mean score is above the midpoint between the reference's and the core's mean
       score. With ``smooth`` each call is then replaced by the majority of its neighbourhood (ties keep
       the spot's own call).

    Parameters
    ----------
    data
        One section with raw counts (``layers["counts"]`` when present, else ``X``).
    reference
        Non-malignant spots: a boolean mask over spots, the name of a boolean ``obs`` column, or a list of
        spot names. With ``reference_key``: the category (or categories) of that ``obs`` column that are
        non-malignant. ``None`` with no ``reference_key``: found automatically (step 2).
    reference_key
        An ``obs`` column with annotations (e.g. a pathologist's or cell-type labels); ``reference`` then
        names its non-malignant categories. A boolean column may be given without ``reference``.
    gene_positions
        Genomic positions, indexed by gene symbol, with columns ``chromosome``, ``start``, ``end``
        (chromosomes with or without the ``"chr"`` prefix). By default
        :func:`hist_sd.datasets.gene_positions` of ``genome``.
    genome
        Genome of the default position table (``"hg38"`` or ``"mm10"``).
    window_size
        Genes per running window of infercnvpy.
    n_clusters
        Number of CNV clusters; by default ``round(sqrt(n_spots / 10))`` clipped to 3..10.
    smooth
        Smooth scores and calls over grid neighbours.
    reference_fraction
        Fraction of spots in the automatic reference, and in the tumour core.
    layer
        Layer with raw counts; by default ``layers["counts"]`` when present, else ``X``.
    layout
        Spot layout whose grid neighbours ``smooth`` averages over (see :func:`hist_sd.pp.grid`); ``"auto"`` reads
        ``uns["hist_sd"]["technology"]``.
    key_added
        Calls go to ``obs[key_added]`` (bool), scores to ``obs[f"{key_added}_score"]`` (float, higher = more
        tumour-like), the reference to ``obs[f"{key_added}_reference"]``, the CNV clusters to
        ``obs[f"{key_added}_cnv_cluster"]``; parameters and the threshold to ``uns[key_added]``.
    %(table_key)s
    seed
        Seed of the PCA and k-means.
    overwrite
        Replace existing keys (including ``obsm["X_cnv"]`` and ``uns["cnv"]``).

    Returns
    -------
    Nothing; writes the ``obs`` columns above, ``obsm["X_cnv"]`` and ``uns["cnv"]["chr_pos"]`` (where
    :func:`infercnvpy.pl.chromosome_heatmap` finds them) and ``uns[key_added]``.
    """
    _, adata = resolve(data, table_key)
    names = _check_tumor_labels_args(
        adata,
        window_size=window_size,
        n_clusters=n_clusters,
        reference_fraction=reference_fraction,
        key_added=key_added,
        smooth=smooth,
        layout=layout,
        overwrite=overwrite,
    )
    ref_mask = _reference_mask(adata, reference, reference_key)
    set_seed(seed)

    prep = _prepare(adata, layer=layer, gene_positions=gene_positions, genome=genome)
    ref_mask, rule, n_ref = _final_reference(ref_mask, prep.marker, prep.used, reference_fraction)
    profile_x = _denoise(_cnv_profiles(prep.work, ref_mask, window_size), DYNAMIC_THRESHOLD)
    near = _neighbours(adata, layout) if smooth else None
    score, core = _score(profile_x, prep, ref_mask, reference_fraction=reference_fraction, near=near)
    k = _n_clusters(adata.n_obs) if n_clusters is None else int(n_clusters)
    clusters = _cluster(profile_x, k, seed)
    call, threshold, cluster_score = _call(score, clusters, ref_mask, core, near=near)
    tumour_clusters = [int(c) for c in cluster_score.index[cluster_score.to_numpy() > threshold]]

    _write_tumor_labels(adata, prep.work, names, call=call, score=score, ref_mask=ref_mask, clusters=clusters, k=k,
                        profile_x=profile_x)
    adata.uns.pop(key_added, None)
    store_params(
        adata,
        key_added,
        {
            "reference": "given" if reference is not None else None,
            "reference_key": reference_key,
            "gene_positions": "given" if gene_positions is not None else genome,
            "genome": genome,
            "window_size": window_size,
            "n_clusters": k,
            "smooth": smooth,
            "reference_fraction": reference_fraction,
            "layer": layer,
            "layout": layout,
            "seed": seed,
        },
        reference_rule=rule,
        n_reference=n_ref,
        n_core=int(core.sum()),
        n_genes_positioned=prep.n_matched,
        threshold=threshold,
        cluster_score=cluster_score.to_numpy(dtype=float),
        tumor_clusters=np.asarray(tumour_clusters, dtype=int),
        markers={k_: np.asarray(v, dtype=str) for k_, v in prep.used.items()},
    )
    logger.info(
        "tumor_labels: %d of %d spots called tumour (reference %d spots, %d genes positioned).",
        int(call.sum()), adata.n_obs, n_ref, prep.n_matched,
    )  # fmt: skip
    log_written("obs", *names.values())
    log_written("obsm", f"X_{_CNV_KEY}")
    log_written("uns", _CNV_KEY, key_added)


# ----------------------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------------------
def _check_tumor_labels_args(
    adata: AnnData,
    *,
    window_size: int,
    n_clusters: int | None,
    reference_fraction: float,
    key_added: str,
    smooth: bool,
    layout: str,
    overwrite: bool,
) -> dict[str, str]:
    """Check the options, the output keys and (with ``smooth``) the layout; the ``obs`` columns to write."""
    _check_options(adata, window_size=window_size, n_clusters=n_clusters, reference_fraction=reference_fraction)
    names = {
        "call": key_added,
        "score": f"{key_added}_score",
        "reference": f"{key_added}_reference",
        "cluster": f"{key_added}_cnv_cluster",
    }
    for col in names.values():
        check_key_free(adata.obs, col, "obs", overwrite=overwrite, protected=input_keys(adata, "obs"))
    check_key_free(adata.obsm, f"X_{_CNV_KEY}", "obsm", overwrite=overwrite)
    check_key_free(adata.uns, _CNV_KEY, "uns", overwrite=overwrite)
    check_key_free(adata.uns, key_added, "uns", overwrite=overwrite, protected=input_keys(adata, "uns"))
    if smooth:
        try:
            pick_layout(adata, layout)
        except ValueError as err:
            raise ValueError(f"`smooth=True` smooths over grid neighbours: {err} Or pass smooth=False.") from err
    return names


def _check_options(adata: AnnData, *, window_size: int, n_clusters: int | None, reference_fraction: float) -> None:
    if adata.n_obs < MIN_SPOTS:
        raise ValueError(
            f"The section has {adata.n_obs} spots; tumour labels from CNV inference need at least {MIN_SPOTS}."
        )
    if isinstance(window_size, bool) or not isinstance(window_size, int | np.integer) or window_size < 2:
        raise ValueError(f"`window_size` must be an integer >= 2 (genes per window), got {window_size!r}.")
    if n_clusters is not None and (
        isinstance(n_clusters, bool) or not isinstance(n_clusters, int | np.integer) or not 2 <= n_clusters < adata.n_obs
    ):
        raise ValueError(f"`n_clusters` must be None or an integer in [2, {adata.n_obs - 1}], got {n_clusters!r}.")
    if not 0 < float(reference_fraction) < 0.5:
        raise ValueError(f"`reference_fraction` must be in (0, 0.5), got {reference_fraction!r}.")


def _reference_mask(
    adata: AnnData, reference: Sequence[Any] | np.ndarray | pd.Series | str | None, reference_key: str | None
) -> np.ndarray | None:
    """The reference as a boolean mask over spots (``None``: find it automatically)."""
    n = adata.n_obs
    if reference_key is not None:
        if reference_key not in adata.obs.columns:
            raise KeyError(f"`reference_key`={reference_key!r} is not an `obs` column; it has {list(adata.obs.columns)}.")
        col = adata.obs[reference_key]
        if reference is None:
            if not pd.api.types.is_bool_dtype(col):
                raise ValueError(
                    f"`obs[{reference_key!r}]` is not boolean, so `reference` must name its non-malignant "
                    f"categories (it has {list(pd.unique(col.dropna()))[:10]})."
                )
            mask = col.to_numpy(dtype=bool)
        else:
            cats = [reference] if isinstance(reference, str) else list(reference)
            unknown = [c for c in cats if c not in set(col.dropna())]
            if unknown:
                raise ValueError(
                    f"`reference` categories {unknown} do not occur in `obs[{reference_key!r}]` "
                    f"(it has {list(pd.unique(col.dropna()))[:10]})."
                )
            mask = col.isin(cats).to_numpy()
    elif reference is None:
        return None
    elif isinstance(reference, str):
        if reference not in adata.obs.columns:
            raise KeyError(f"`reference`={reference!r} is not an `obs` column; it has {list(adata.obs.columns)}.")
        if not pd.api.types.is_bool_dtype(adata.obs[reference]):
            raise ValueError(
                f"`obs[{reference!r}]` must be boolean to serve as `reference`; for categories pass "
                f"`reference_key={reference!r}` and `reference=[...]`."
            )
        mask = adata.obs[reference].to_numpy(dtype=bool)
    else:
        values = np.asarray(reference)
        if values.dtype == bool:
            if values.shape != (n,):
                raise ValueError(f"A boolean `reference` must have one entry per spot ({n}), got shape {values.shape}.")
            mask = values
        else:
            names = pd.Index(values.astype(str))
            unknown = names[~names.isin(adata.obs_names)]
            if len(unknown):
                raise KeyError(
                    f"`reference` has {len(unknown)} spot name(s) not in `obs_names`, e.g. {list(unknown[:3])}."
                )
            mask = adata.obs_names.isin(names)
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("No reference found: the given `reference` selects no spot.")
    return mask


def _final_reference(
    ref_mask: np.ndarray | None, marker: np.ndarray, used: dict[str, list[str]], reference_fraction: float
) -> tuple[np.ndarray, str, int]:
    """The given reference or else the automatic one, checked to be usable; with its rule and its size."""
    rule = "given"
    if ref_mask is None:
        missing = [name for name, genes in used.items() if len(genes) < MIN_MARKERS]
        if missing:
            raise ValueError(
                f"No reference found: the automatic rule needs at least {MIN_MARKERS} detected genes of each "
                f"marker set, but {', '.join(missing)} has fewer ({ {k: list(v) for k, v in used.items()} }). "
                "Pass `reference=` (non-malignant spots) or `reference_key=`."
            )
        ref_mask = marker >= np.quantile(marker, 1 - reference_fraction)
        rule = f"top {reference_fraction:g} of the non-malignant marker score"
    n_ref = int(ref_mask.sum())
    n_obs = marker.size
    if n_ref < MIN_REFERENCE or n_ref == n_obs:
        raise ValueError(
            f"No usable reference: {n_ref} of {n_obs} spots are in the reference; at least {MIN_REFERENCE} "
            "non-malignant spots, and some others, are needed."
        )
    return ref_mask, rule, n_ref


@dataclass(frozen=True)
class _Prepared:
    """What every setting of the recipe shares for one section: the normalised, positioned copy and the markers."""

    work: AnnData
    n_matched: int
    parts: dict[str, np.ndarray]  # mean marker z-score of each set, per spot
    used: dict[str, list[str]]  # the detected genes of each set
    epithelial_weight: float = EPITHELIAL_WEIGHT

    @property
    def marker(self) -> np.ndarray:
        """Non-malignant marker score: immune + stromal - ``epithelial_weight`` x epithelial."""
        p = self.parts
        return p["immune"] + p["stromal"] - self.epithelial_weight * p["epithelial"]

    @property
    def has_epithelial(self) -> bool:
        return len(self.used["epithelial"]) > 0


def _prepare(
    adata: AnnData, *, layer: str | None, gene_positions: pd.DataFrame | None, genome: str
) -> _Prepared:
    """Normalise a copy of the counts, place its genes on the genome and score the marker sets (step 1, 2)."""
    work = _normalised_copy(adata, layer)
    n_matched = _attach_positions(work, gene_positions, genome)
    parts, used = _marker_parts(work)
    return _Prepared(work=work, n_matched=n_matched, parts=parts, used=used)


def _cnv_profiles(work: AnnData, ref_mask: np.ndarray, window_size: int) -> np.ndarray:
    """Run infercnvpy on ``work`` against the reference; the dense CNV profile of every spot, before denoising.

    infercnvpy's noise filter (``dynamic_threshold``) is left to :func:`_denoise`, so that one run serves every
    threshold; it then uses the whole section's standard deviation (infercnvpy's own, per chunk of 5000 spots).
    """
    import infercnvpy as cnv

    from hist_sd._core._settings import quiet_third_party

    work.obs[_REF_COL] = pd.Categorical(np.where(ref_mask, "reference", "other"))
    with quiet_third_party():  # infercnvpy's bar and "Skipped N genes" messages follow hs.settings
        cnv.tl.infercnv(work, reference_key=_REF_COL, reference_cat="reference", window_size=window_size, n_jobs=1,
                        dynamic_threshold=None, key_added=_CNV_KEY)
    x_cnv = work.obsm[f"X_{_CNV_KEY}"]
    return x_cnv.toarray() if sparse.issparse(x_cnv) else np.asarray(x_cnv)


def _denoise(x: np.ndarray, dynamic_threshold: float | None) -> np.ndarray:
    """The noise filter of infercnvpy: values within ``dynamic_threshold`` standard deviations of 0 become 0."""
    if dynamic_threshold is None:
        return x
    out = x.copy()
    out[np.abs(out) < dynamic_threshold * np.std(out)] = 0
    return out


def _score(
    x: np.ndarray,
    prep: _Prepared,
    ref_mask: np.ndarray,
    *,
    reference_fraction: float,
    near: list[np.ndarray] | None,
    core_rule: str = CORE_RULE,
    marker_weight: float = MARKER_WEIGHT,
) -> tuple[np.ndarray, np.ndarray]:
    """Tumour score of every spot (step 4) and the tumour core.

    The score is the correlation of a spot's CNV profile with the core's mean profile minus the reference's,
    mixed with ``marker_weight`` of ``tanh(-marker / sd(marker))`` (both in [-1, 1]), averaged over ``near``.
    """
    marker = prep.marker
    by_marker = prep.has_epithelial if core_rule == "auto" else core_rule == "marker"
    core = _tumour_core(x, marker, ref_mask, reference_fraction, has_epithelial=by_marker)
    score = _profile_correlation(x, x[core].mean(0) - x[ref_mask].mean(0))
    if marker_weight:
        sd = marker.std()
        squashed = np.tanh(-marker / sd) if sd > 0 else np.zeros_like(marker)
        score = (1 - marker_weight) * score + marker_weight * squashed
    return _smooth(score, near), core


def _call(
    score: np.ndarray,
    clusters: np.ndarray,
    ref_mask: np.ndarray,
    core: np.ndarray,
    *,
    near: list[np.ndarray] | None,
    call_threshold: float = CALL_THRESHOLD,
) -> tuple[np.ndarray, float, pd.Series]:
    """Tumour calls (step 5): clusters whose mean score passes the threshold, then the neighbourhood majority."""
    lo, hi = float(score[ref_mask].mean()), float(score[core].mean())
    threshold = lo + call_threshold * (hi - lo)
    cluster_score = pd.Series(score).groupby(clusters).mean()
    call = np.isin(clusters, cluster_score.index[cluster_score.to_numpy() > threshold])
    return _majority(call, near), threshold, cluster_score


def _write_tumor_labels(
    adata: AnnData,
    work: AnnData,
    names: dict[str, str],
    *,
    call: np.ndarray,
    score: np.ndarray,
    ref_mask: np.ndarray,
    clusters: np.ndarray,
    k: int,
    profile_x: np.ndarray,
) -> None:
    """Write calls, scores, reference and CNV clusters to ``obs``; infercnvpy's output to ``obsm``/``uns``."""
    adata.obs[names["call"]] = call
    adata.obs[names["score"]] = score.astype(float)
    adata.obs[names["reference"]] = np.asarray(ref_mask, dtype=bool)
    adata.obs[names["cluster"]] = pd.Categorical(clusters.astype(str), categories=[str(i) for i in range(k)])
    adata.obsm[f"X_{_CNV_KEY}"] = sparse.csr_matrix(profile_x)
    adata.uns[_CNV_KEY] = dict(work.uns[_CNV_KEY])


def _normalised_copy(adata: AnnData, layer: str | None) -> AnnData:
    """log1p counts per million of the genes detected in at least :data:`MIN_GENE_SPOTS` spots."""
    x, _ = counts_matrix(adata, layer)
    x = sparse.csr_matrix(x, dtype=np.float64)
    detected = np.asarray((x > 0).sum(axis=0)).ravel() >= MIN_GENE_SPOTS
    x = x[:, detected]
    totals = np.asarray(x.sum(axis=1)).ravel()
    if np.any(totals <= 0):
        raise ValueError(f"{int((totals <= 0).sum())} spot(s) have no counts in the detected genes; remove them first.")
    return AnnData(
        X=log_normalize(x, target_sum=1e6),
        obs=pd.DataFrame(index=adata.obs_names.copy()),
        var=pd.DataFrame(index=adata.var_names[detected].copy()),
    )


def _position_table(gene_positions: pd.DataFrame | None, genome: str) -> pd.DataFrame:
    from hist_sd.datasets._genes import check_positions
    from hist_sd.datasets._genes import gene_positions as _gene_positions

    if gene_positions is None:
        return _gene_positions(genome)  # type: ignore[arg-type]
    return check_positions(gene_positions, what="gene_positions")


def _attach_positions(
    work: AnnData, gene_positions: pd.DataFrame | None, genome: str, *, min_genes: int = MIN_GENES
) -> int:
    pos = _position_table(gene_positions, genome)
    matched = pos.reindex(work.var_names)
    ok = matched["chromosome"].notna().to_numpy() & matched["start"].notna().to_numpy()
    n = int(ok.sum())
    if n < min_genes:
        raise ValueError(
            f"Only {n} of the {work.n_vars} detected genes have a genomic position ({genome if gene_positions is None else 'given table'}); "
            f"at least {min_genes} are needed. Genes are matched by `var_names`, which must be gene symbols like "
            f"the table's (e.g. {list(pos.index[:3])}); the data has {list(work.var_names[:3])}."
        )
    work.var["chromosome"] = matched["chromosome"].astype(object).where(ok, None).to_numpy()
    work.var["start"] = matched["start"].to_numpy(dtype=float)
    work.var["end"] = matched["end"].to_numpy(dtype=float)
    return n


def _marker_parts(work: AnnData) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Mean z-score of each marker set per spot (0 for a set without detected genes) and its detected genes."""
    sets = {"immune": IMMUNE_MARKERS, "stromal": STROMAL_MARKERS, "epithelial": EPITHELIAL_MARKERS}
    means: dict[str, np.ndarray] = {}
    used: dict[str, list[str]] = {}
    for name, genes in sets.items():
        present = [g for g in genes if g in work.var_names]
        used[name] = present
        if not present:
            means[name] = np.zeros(work.n_obs)
            continue
        x = work[:, present].X
        x = x.toarray() if sparse.issparse(x) else np.asarray(x)
        sd = x.std(axis=0)
        z = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        means[name] = z.mean(axis=1)
    return means, used


def _tumour_core(
    x: np.ndarray, marker: np.ndarray, ref: np.ndarray, fraction: float, *, has_epithelial: bool
) -> np.ndarray:
    """The ``fraction`` of non-reference spots most unlike normal tissue (lowest marker score, or strongest CNV)."""
    others = np.flatnonzero(~ref)
    n_core = max(MIN_REFERENCE, int(round(fraction * ref.size)))
    n_core = min(n_core, others.size)
    key = marker[others] if has_epithelial else -np.mean(x[others] ** 2, axis=1)
    core = np.zeros(ref.size, dtype=bool)
    core[others[np.argsort(key, kind="stable")[:n_core]]] = True
    return core


def _profile_correlation(x: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """Pearson correlation of every row of ``x`` with ``profile`` (0 where either is constant)."""
    xc = x - x.mean(axis=1, keepdims=True)
    pc = profile - profile.mean()
    denom = np.linalg.norm(xc, axis=1) * np.linalg.norm(pc)
    if not np.any(denom > 0):
        logger.warning("tumor_labels: no CNV signal distinguishes the tumour core from the reference; scores are 0.")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denom > 0, xc @ pc / np.where(denom > 0, denom, 1.0), 0.0)
    return out


def _neighbours(adata: AnnData, layout: str) -> list[np.ndarray]:
    """For each spot, itself and its grid neighbours under the table's layout (8 on square grids, 6 on Visium)."""
    grid = assign_grid(adata, layout=layout, pad_multiple=1)
    pairs = neighbours(grid.rows, grid.cols, grid.layout, row_parity=grid.row_parity)
    groups = np.split(pairs[:, 1], np.searchsorted(pairs[:, 0], np.arange(1, adata.n_obs)))
    return [np.concatenate([[i], g]).astype(int) for i, g in enumerate(groups)]


def _smooth(values: np.ndarray, neighbours: list[np.ndarray] | None) -> np.ndarray:
    """Mean of ``values`` over each spot's neighbourhood (spots with as many neighbours at once)."""
    if neighbours is None:
        return values
    out = np.empty(len(neighbours), dtype=float)
    sizes = np.array([len(n) for n in neighbours])
    for size in np.unique(sizes):
        rows = np.flatnonzero(sizes == size)
        out[rows] = values[np.stack([neighbours[i] for i in rows])].mean(axis=1)
    return out


def _majority(call: np.ndarray, neighbours: list[np.ndarray] | None) -> np.ndarray:
    if neighbours is None:
        return call
    frac = _smooth(call.astype(float), neighbours)
    return np.where(frac == 0.5, call, frac > 0.5)


def _n_clusters(n_obs: int) -> int:
    return int(np.clip(round(np.sqrt(n_obs / 10)), 3, 10))


def _cluster(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means clusters of the CNV profiles, on their first principal components."""
    return _kmeans(_components(x, seed), k, seed)


def _components(x: np.ndarray, seed: int) -> np.ndarray:
    """The first (up to 20) principal components of the CNV profiles, which k-means clusters."""
    from sklearn.decomposition import PCA

    n_comps = int(min(20, x.shape[0] - 1, x.shape[1]))
    return PCA(n_components=n_comps, random_state=seed).fit_transform(x) if n_comps >= 2 else x


def _kmeans(z: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(z).astype(int)
