"""Copy-number inference (infercnvpy) on predicted or measured expression, against non-tumour spots."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._core._data import resolve
from hist_sd._core._params import check_key_free, input_keys, log_written, store_params
from hist_sd._docs import doc_params
from hist_sd.tl._downstream import dense, expression_table, key_label
from hist_sd.tl._tumor import (
    MIN_GENE_SPOTS,
    MIN_REFERENCE,
    _attach_positions,
    _position_table,
    _profile_correlation,
    _reference_mask,
)

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

__all__ = ["cnv"]

_REF_COL = "_hist_sd_cnv_reference"


@doc_params
def cnv(
    data: AnnData | SpatialData,
    *,
    key: str | None = C.PRED,
    reference: Sequence[Any] | np.ndarray | pd.Series | str | None = None,
    reference_key: str | None = None,
    genes: Sequence[str] | None = None,
    gene_positions: pd.DataFrame | None = None,
    genome: str = "hg38",
    window_size: int = 100,
    min_genes: int = C.MIN_CNV_GENES,
    key_added: str = "cnv",
    table_key: str | None = None,
    overwrite: bool = False,
) -> None:
    """Infer copy-number profiles with :func:`infercnvpy.tl.infercnv` from predicted (or measured) expression.

    The expression (``log1p`` counts per 10,000) is placed on the genome (:func:`hist_sd.datasets.gene_positions`),
    and each spot's running-window profile is taken relative to a reference of non-tumour spots. Measured
    expression (``key=None``) keeps genes detected in at least 3 spots.

    Parameters
    ----------
    data
        One slide.
    %(key)s
    reference
        Non-tumour spots: a boolean mask, a boolean ``obs`` column, a list of spot names, or with
        ``reference_key`` the non-tumour categories of that column. By default the spots that are not tumour in
        ``obs["tumor"]`` (:func:`hist_sd.tl.tumor_labels`), else those with ``obs["hist_tumor"] < 0.5`` (a
        predicted tumour probability).
    reference_key
        An ``obs`` column of annotations; ``reference`` names its non-tumour categories.
    genes
        Only these genes (e.g. the predicted panel, to compare measured with predicted on the same genes).
    gene_positions
        Genomic positions indexed by gene symbol (``chromosome``, ``start``, ``end``); by default those of
        ``genome``.
    genome
        ``"hg38"`` or ``"mm10"``.
    window_size
        Genes per running window (infercnvpy).
    min_genes
        Refuse panels with fewer genes that have a genomic position: windows of ~100 genes over a few hundred
        genes give profiles of a handful of windows per chromosome.
    key_added
        Profiles go to ``obsm[f"X_{key_added}"]`` and window positions to ``uns[key_added]["chr_pos"]`` (where
        :func:`infercnvpy.pl.chromosome_heatmap` finds them with ``use_rep=key_added``); the per-spot CNV score
        to ``obs[f"{key_added}_score"]``: the Pearson correlation of the spot's profile with the tumour's (the
        mean profile of the non-reference spots minus that of the reference), as :func:`hist_sd.tl.tumor_labels`
        scores spots; the mean gene-level profile per chromosome arm to
        ``obsm[f"{key_added}_arms"]`` (spots x arms, e.g. ``"chr1p"``); the reference to
        ``obs[f"{key_added}_reference"]``; parameters to ``uns[key_added]["params"]``.
    %(table_key)s
    overwrite
        Replace existing results under these keys.

    Returns
    -------
    Nothing; writes the keys above. Spots outside tissue get no profile (NaN score).
    """
    _, adata = resolve(data, table_key)
    names = {"obsm": f"X_{key_added}", "arms": f"{key_added}_arms", "score": f"{key_added}_score",
             "reference": f"{key_added}_reference"}
    for where, k in (("obsm", names["obsm"]), ("obsm", names["arms"]), ("obs", names["score"]),
                     ("obs", names["reference"]), ("uns", key_added)):
        check_key_free(getattr(adata, where), k, where, overwrite=overwrite, protected=input_keys(adata, where))
    if isinstance(window_size, bool) or not isinstance(window_size, int | np.integer) or window_size < 2:
        raise ValueError(f"`window_size` must be an integer >= 2 (genes per window), got {window_size!r}.")
    ref_all, ref_rule = _default_reference(adata, reference, reference_key)
    work = expression_table(adata, key, genes=genes, in_tissue_only=True)
    if key is None:
        detected = np.asarray((work.X > 0).sum(axis=0)).ravel() >= MIN_GENE_SPOTS
        work = work[:, detected].copy()
    work.X = dense(work.X)
    n_pos = _attach_positions(work, gene_positions, genome, min_genes=int(min_genes))
    ref = ref_all[adata.obs_names.get_indexer(work.obs_names)]
    if ref.sum() < MIN_REFERENCE or ref.all():
        raise ValueError(
            f"No usable reference: {int(ref.sum())} of {work.n_obs} in-tissue spots are non-tumour ({ref_rule}); at "
            f"least {MIN_REFERENCE} reference spots, and some others, are needed."
        )
    profiles, chr_pos, gene_values = _infercnv(work, ref, window_size)
    table = gene_positions if gene_positions is not None else _position_table(None, genome)
    arms = _arm_profile(gene_values, work.var_names, table)
    _write(adata, work.obs_names, names, profiles=profiles, arms=arms, ref=ref)
    adata.uns.pop(key_added, None)
    adata.uns[key_added] = {"chr_pos": chr_pos}
    store_params(
        adata, key_added,
        {"key": key_label(key), "reference": ref_rule, "genome": genome if gene_positions is None else "given",
         "window_size": window_size, "min_genes": int(min_genes), "genes": "given" if genes is not None else None},
        n_genes_positioned=n_pos, n_reference=int(ref.sum()), source=str(work.uns["source"]),
    )
    logger.info("cnv: %d spots, %d positioned genes of %s, reference %d spots.", work.n_obs, n_pos,
                key_label(key), int(ref.sum()))
    log_written("obsm", names["obsm"], names["arms"])
    log_written("obs", names["score"], names["reference"])
    log_written("uns", key_added)


def _default_reference(
    adata: AnnData, reference: Any, reference_key: str | None
) -> tuple[np.ndarray, str]:
    """The reference as a mask over all spots, and how it was chosen."""
    if reference is not None or reference_key is not None:
        try:
            mask = _reference_mask(adata, reference, reference_key)
        except ValueError as err:
            raise ValueError(f"No reference spots: {err}") from err
        return np.asarray(mask, dtype=bool), "given"
    if C.TUMOR in adata.obs and pd.api.types.is_bool_dtype(adata.obs[C.TUMOR]):
        return ~adata.obs[C.TUMOR].to_numpy(dtype=bool), f"not obs[{C.TUMOR!r}]"
    if C.TUMOR_PRED in adata.obs:
        prob = pd.to_numeric(adata.obs[C.TUMOR_PRED], errors="coerce").to_numpy(dtype=float)
        return np.nan_to_num(prob, nan=1.0) < 0.5, f"obs[{C.TUMOR_PRED!r}] < 0.5"
    raise ValueError(
        f"No reference spots: pass `reference=` (non-tumour spots) or `reference_key=`, or label tumour spots first "
        f"(`hs.tl.tumor_labels` writes obs[{C.TUMOR!r}]; a tumour model's `hs.tl.predict` writes "
        f"obs[{C.TUMOR_PRED!r}])."
    )


def _infercnv(work: AnnData, ref: np.ndarray, window_size: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Infercnvpy's window profiles, chromosome start positions and per-gene values (spots x genes)."""
    import infercnvpy as icnv

    from hist_sd._core._settings import quiet_third_party

    work.obs[_REF_COL] = pd.Categorical(np.where(ref, "reference", "other"))
    with quiet_third_party():  # infercnvpy's bar and "Skipped N genes" messages follow hs.settings
        icnv.tl.infercnv(work, reference_key=_REF_COL, reference_cat="reference", window_size=window_size, n_jobs=1,
                         key_added="cnv", calculate_gene_values=True)
    profiles = dense(work.obsm["X_cnv"])
    chr_pos = work.uns["cnv"]["chr_pos"]
    gene_values = pd.DataFrame(dense(work.layers["gene_values_cnv"]), index=work.obs_names, columns=work.var_names)
    return profiles, chr_pos, gene_values


def _arm_profile(gene_values: pd.DataFrame, genes: pd.Index, positions: pd.DataFrame) -> pd.DataFrame:
    """Mean gene-level CNV value per chromosome arm (``"chr1p"``, ...), spots x arms."""
    if "arm" not in positions.columns:
        return pd.DataFrame(index=gene_values.index)
    pos = positions.loc[~positions.index.duplicated(keep="first")].reindex(genes)
    chrom = "chr" + pos["chromosome"].astype(str).str.replace(r"^chr", "", regex=True)
    arm = (chrom + pos["arm"].astype(str)).where(pos["arm"].isin(["p", "q"]))
    values = gene_values.loc[:, gene_values.notna().any(axis=0).to_numpy()]
    labels = arm.reindex(values.columns)
    keep = labels.notna().to_numpy()
    out = values.loc[:, keep].T.groupby(labels[keep].to_numpy()).mean().T
    order = sorted(out.columns, key=_arm_order)
    return out[order]


def _arm_order(name: str) -> tuple[int, str]:
    chrom = name[3:-1]
    return (int(chrom) if chrom.isdigit() else 100 + ord(chrom[0]), name[-1])


def _write(adata: AnnData, spots: pd.Index, names: dict[str, str], *, profiles: np.ndarray, arms: pd.DataFrame,
           ref: np.ndarray) -> None:
    idx = adata.obs_names.get_indexer(spots)
    full = np.full((adata.n_obs, profiles.shape[1]), np.nan)
    full[idx] = profiles
    adata.obsm[names["obsm"]] = full
    adata.obsm[names["arms"]] = arms.reindex(adata.obs_names)
    score = np.full(adata.n_obs, np.nan)
    score[idx] = _profile_correlation(profiles, profiles[~ref].mean(axis=0) - profiles[ref].mean(axis=0))
    adata.obs[names["score"]] = score
    reference = np.zeros(adata.n_obs, dtype=bool)
    reference[idx] = ref
    adata.obs[names["reference"]] = reference
