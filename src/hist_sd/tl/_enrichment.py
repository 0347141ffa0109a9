"""Differential expression between groups of spots and gene-set enrichment (scanpy + decoupler)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from hist_sd import _constants as C
from hist_sd._core._data import resolve
from hist_sd._core._params import check_key_free, input_keys, log_written, store_params
from hist_sd._docs import doc_params
from hist_sd.tl._downstream import dense, expression_table, key_label

if TYPE_CHECKING:
    from spatialdata import SpatialData

    from hist_sd.datasets._fetch import PathLike

logger = logging.getLogger("hist_sd")

__all__ = ["differential_expression", "enrichment"]

#: Columns of the table :func:`enrichment` returns.
ENRICHMENT_COLUMNS: tuple[str, ...] = ("group", "method", "source", "term", "score", "pvalue", "padj", "overlap",
                                       "set_size")
#: Groups with fewer spots are left out of the comparison.
MIN_GROUP_SPOTS = 3


@doc_params
def enrichment(
    data: AnnData | SpatialData,
    *,
    groupby: str,
    key: str | None = C.PRED,
    source: str | pd.DataFrame = "hallmarks",
    genes: Sequence[str] | None = None,
    methods: Sequence[str] = ("ora", "ulm"),
    alpha: float = 0.05,
    min_logfc: float = 0.25,
    tmin: int = 5,
    data_dir: PathLike | None = None,
    key_added: str = "hist_enrichment",
    table_key: str | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Which gene sets distinguish each group of spots, from predicted (or measured) expression.

    Two complementary analyses, each against the rest of the spots:

    * ``"ora"``: differential expression with :func:`scanpy.tl.rank_genes_groups` (Wilcoxon) gives each group's
      up-regulated genes (adjusted p < ``alpha``, log2 fold change > ``min_logfc``); a one-sided Fisher test
      (hypergeometric) of their overlap with every set, the analysed genes as universe, scores the log odds ratio
      (Haldane-Anscombe corrected, as decoupler's ORA).
    * ``"ulm"``: :func:`decoupler.mt.ulm` scores every set in every spot; :func:`decoupler.tl.rankby_group` then
      compares each group's scores with the rest (t-test); the score is its statistic.

    Parameters
    ----------
    data
        One slide.
    groupby
        ``obs`` column of groups (e.g. ``"hist_subcluster"`` of :func:`hist_sd.tl.heterogeneity`, ``"tumor"``).
    %(key)s
    source
        ``"hallmarks"``, ``"go_bp"``, ``"kegg"`` or ``"dorothea"`` (:func:`hist_sd.datasets.gene_sets`, read
        offline), or a decoupler network (DataFrame with ``source``, ``target`` and optionally ``weight``).
    genes
        Only these genes (e.g. the predicted panel, to compare measured with predicted on the same genes).
    methods
        ``"ora"`` and/or ``"ulm"``.
    alpha
        Adjusted p-value threshold of the differentially expressed genes.
    min_logfc
        Log2 fold-change threshold of the differentially expressed genes.
    tmin
        Sets with fewer of the analysed genes are left out.
    data_dir
        Folder holding ``gene_sets/`` (overrides ``$HIST_SD_DATA_DIR``), for a named ``source``.
    key_added
        ULM scores go to ``obsm[f"{key_added}_ulm"]`` (spots x sets, NaN outside tissue); the parameters, the
        number of differentially expressed genes per group and the result table to ``uns[key_added]``.
    %(table_key)s
    overwrite
        Replace existing results under ``key_added``.

    Returns
    -------
    Tidy DataFrame, one row per group, method and set: ``group``, ``method``, ``source`` (the collection),
    ``term``, ``score``, ``pvalue``, ``padj`` (Benjamini-Hochberg within group and method), ``overlap`` (ORA:
    differentially expressed genes in the set) and ``set_size`` (analysed genes in the set).
    """
    _, adata = resolve(data, table_key)
    methods = _check_methods(methods)
    ulm_key = f"{key_added}_ulm"
    check_key_free(adata.uns, key_added, "uns", overwrite=overwrite, protected=input_keys(adata, "uns"))
    if "ulm" in methods:
        check_key_free(adata.obsm, ulm_key, "obsm", overwrite=overwrite, protected=input_keys(adata, "obsm"))
    name, net = _network(source, data_dir)
    if groupby not in adata.obs.columns:
        raise KeyError(f"`groupby`={groupby!r} is not an `obs` column; the table has {list(adata.obs.columns)}.")
    work = _grouped(adata, key, groupby, genes)
    net = _restrict(net, work.var_names, tmin, name, key)
    de = differential_expression(work, groupby=groupby)
    parts, n_deg = [], {}
    if "ora" in methods:
        ora, n_deg = _ora(de, net, work.var_names, alpha=alpha, min_logfc=min_logfc)
        parts.append(ora.assign(method="ora"))
    if "ulm" in methods:
        ulm, scores = _ulm(work, net, groupby, tmin)
        parts.append(ulm.assign(method="ulm"))
        full = scores.reindex(adata.obs_names)
        adata.obsm[ulm_key] = full
    table = pd.concat(parts, ignore_index=True).assign(source=name)
    table = table[list(ENRICHMENT_COLUMNS)].sort_values(["method", "group", "pvalue"], kind="stable")
    table = table.reset_index(drop=True)
    adata.uns.pop(key_added, None)
    store_params(
        adata, key_added,
        {"groupby": groupby, "key": key_label(key), "source": name, "methods": list(methods), "alpha": alpha,
         "min_logfc": min_logfc, "tmin": tmin},
        n_deg={str(k): int(v) for k, v in n_deg.items()}, n_sets=int(net["source"].nunique()),
        n_genes=int(work.n_vars),
    )
    logger.info("enrichment: %d sets of %s, %d groups, %s.", net["source"].nunique(), name,
                work.obs[groupby].nunique(), key_label(key))
    if "ulm" in methods:
        log_written("obsm", ulm_key)
    log_written("uns", key_added)
    return table


def differential_expression(work: AnnData, *, groupby: str) -> pd.DataFrame:
    """Wilcoxon tests of each group against the rest (:func:`scanpy.tl.rank_genes_groups`), as a tidy table.

    Columns ``group``, ``names``, ``scores``, ``logfoldchanges``, ``pvals``, ``pvals_adj``.
    """
    import scanpy as sc

    tmp = AnnData(X=dense(work.X), obs=work.obs[[groupby]].copy(), var=pd.DataFrame(index=work.var_names.copy()))
    tmp.uns["log1p"] = {"base": None}
    sc.tl.rank_genes_groups(tmp, groupby, method="wilcoxon", use_raw=False, key_added="de")
    return sc.get.rank_genes_groups_df(tmp, group=None, key="de")


def _check_methods(methods: Sequence[str]) -> list[str]:
    methods = [methods] if isinstance(methods, str) else list(methods)
    bad = [m for m in methods if m not in ("ora", "ulm")]
    if not methods or bad:
        raise ValueError(f"`methods` must be a non-empty subset of ['ora', 'ulm'], got {methods!r}.")
    return methods


def _network(source: str | pd.DataFrame, data_dir: PathLike | None) -> tuple[str, pd.DataFrame]:
    from hist_sd.datasets._gene_sets import GENE_SET_SOURCES, gene_sets

    if isinstance(source, pd.DataFrame):
        missing = {"source", "target"} - set(source.columns)
        if missing:
            raise ValueError(f"A `source` network needs columns 'source' and 'target' (decoupler's layout); it lacks "
                             f"{sorted(missing)}.")
        net = source[["source", "target"]].astype(str).assign(
            weight=source["weight"].astype(float) if "weight" in source else 1.0)
        return "custom", net.drop_duplicates(["source", "target"])
    if not isinstance(source, str) or source not in GENE_SET_SOURCES:
        raise ValueError(f"Unknown gene set `source`={source!r}; expected one of {sorted(GENE_SET_SOURCES)} or a "
                         "DataFrame with 'source' and 'target' columns.")
    return source, gene_sets(source, data_dir=data_dir)


def _grouped(adata: AnnData, key: str | None, groupby: str, genes: Sequence[str] | None) -> AnnData:
    work = expression_table(adata, key, genes=genes, in_tissue_only=True, obs=[groupby])
    labels = work.obs[groupby]
    counts = labels.value_counts()
    keep_groups = counts.index[counts >= MIN_GROUP_SPOTS]
    work = work[labels.isin(keep_groups).to_numpy()].copy()
    work.obs[groupby] = pd.Categorical(work.obs[groupby].astype(str))
    if work.obs[groupby].nunique() < 2:
        raise ValueError(f"`obs[{groupby!r}]` needs at least 2 groups of {MIN_GROUP_SPOTS}+ in-tissue spots to compare; "
                         f"it has {counts.to_dict()}.")
    return work


def _restrict(net: pd.DataFrame, genes: pd.Index, tmin: int, name: str, key: str | None) -> pd.DataFrame:
    net = net[net["target"].isin(genes)]
    size = net.groupby("source")["target"].transform("size")
    net = net[size >= tmin]
    if net.empty:
        raise ValueError(
            f"No set of {name!r} has {tmin} or more of the {len(genes)} genes of {key_label(key)}: too few genes for "
            "enrichment. Predict a wider panel (e.g. 1,000 spatially variable genes) or lower `tmin`."
        )
    return net.reset_index(drop=True)


def _ora(de: pd.DataFrame, net: pd.DataFrame, universe: pd.Index, *, alpha: float,
         min_logfc: float) -> tuple[pd.DataFrame, dict[str, int]]:
    """One-sided Fisher test of each group's up-regulated genes against every set."""
    n = len(universe)
    sets = net.groupby("source")["target"].apply(set)
    rows, n_deg = [], {}
    for group, df in de.groupby("group", observed=True, sort=False):
        deg = set(df.loc[(df["pvals_adj"] < alpha) & (df["logfoldchanges"] > min_logfc), "names"].astype(str))
        n_deg[str(group)] = len(deg)
        k = len(deg)
        for term, members in sets.items():
            a = len(deg & members)
            b, c = k - a, len(members) - a
            d = n - a - b - c
            p = float(stats.hypergeom.sf(a - 1, n, len(members), k)) if k else 1.0
            score = float(np.log(((a + 0.5) / (b + 0.5)) / ((c + 0.5) / (d + 0.5))))
            rows.append({"group": str(group), "term": term, "score": score, "pvalue": p, "overlap": a,
                         "set_size": len(members)})
    out = pd.DataFrame(rows)
    out["padj"] = out.groupby("group")["pvalue"].transform(lambda p: stats.false_discovery_control(p.to_numpy()))
    return out, n_deg


def _ulm(work: AnnData, net: pd.DataFrame, groupby: str, tmin: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ULM scores of decoupler per spot, and each group's scores against the rest."""
    import decoupler as dc

    tmp = AnnData(X=dense(work.X), obs=work.obs[[groupby]].copy(), var=pd.DataFrame(index=work.var_names.copy()))
    repaired = dc.mt.ulm(tmp, net, tmin=tmin)
    tmp = repaired if repaired is not None else tmp  # spots without any expression are dropped by decoupler
    scores = tmp.obsm["score_ulm"]
    scores = scores if isinstance(scores, pd.DataFrame) else pd.DataFrame(scores, index=tmp.obs_names)
    by_group = dc.tl.rankby_group(dc.pp.get_obsm(tmp, "score_ulm"), groupby=groupby)
    sizes = net.groupby("source").size()
    out = pd.DataFrame({
        "group": by_group["group"].astype(str).to_numpy(),
        "term": by_group["name"].astype(str).to_numpy(),
        "score": by_group["stat"].to_numpy(dtype=float),
        "pvalue": by_group["pval"].to_numpy(dtype=float),
        "padj": by_group["padj"].to_numpy(dtype=float),
        "overlap": np.nan,
        "set_size": sizes.reindex(by_group["name"].astype(str)).to_numpy(dtype=float),
    })
    return out, scores.astype(float)
