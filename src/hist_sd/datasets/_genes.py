"""Genomic positions of genes (xclone 0.4.0 annotation, Apache-2.0), in the layout infercnvpy expects."""

from __future__ import annotations

import logging
import re
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd._core._params import check_key_free, log_written, store_params
from hist_sd.datasets._fetch import GENE_POSITIONS, PathLike, locate

logger = logging.getLogger("hist_sd")

Genome = Literal["hg38", "mm10"]

GENOME_FILES: dict[str, str] = {
    "hg38": "annotate_genes_hg38_update.txt",
    "mm10": "annotate_genes_mm10.txt",
}
POSITION_COLUMNS: tuple[str, ...] = ("chromosome", "start", "end", "arm", "band")
_R_MANGLED = re.compile(r"^X(\d.*)$")


def gene_positions(
    genome: Genome = "hg38",
    *,
    data_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
) -> pd.DataFrame:
    """Chromosome, start, end, arm and cytoband of every gene.

    The annotation shipped with xclone 0.4.0 (Ensembl genes with HGNC/MGI symbols). It is read from
    ``gene_positions/`` in the local mirror (``data_dir`` or ``$HIST_SD_DATA_DIR``), else downloaded from the
    XClone GitHub repository at a pinned commit and checked against its sha256.

    Parameters
    ----------
    genome
        ``"hg38"`` (human) or ``"mm10"`` (mouse).
    data_dir
        Folder holding ``gene_positions/`` (overrides ``$HIST_SD_DATA_DIR``).
    cache_dir
        Download cache (default ``$HIST_SD_CACHE_DIR`` or ``~/.cache/hist_sd``).

    Returns
    -------
    DataFrame indexed by gene symbol (unique; the first entry is kept for duplicated symbols) with columns
    ``chromosome`` (``"chr1"`` … ``"chrX"``, ``"chrY"``, as infercnvpy expects), ``start``, ``end`` (int,
    1-based bp), ``arm`` (``"p"``/``"q"``), ``band`` (e.g. ``"p36.33"``; may be missing) and ``gene_id``
    (Ensembl).
    """
    if genome not in GENOME_FILES:
        raise ValueError(f"`genome` must be one of {sorted(GENOME_FILES)}, got {genome!r}.")
    path = locate(GENE_POSITIONS, GENOME_FILES[genome], data_dir=data_dir, cache_dir=cache_dir)
    raw = pd.read_csv(path, sep="\t", dtype={"chr": str})
    needed = {"GeneName", "GeneID", "chr", "start", "stop", "arm", "band"}
    if not needed <= set(raw.columns):
        raise ValueError(f"{str(path)!r} is not an xclone gene annotation; it lacks {sorted(needed - set(raw.columns))}.")
    df = pd.DataFrame(
        {
            "chromosome": _chr(raw["chr"]).to_numpy(dtype=object),
            "start": raw["start"].astype(np.int64).to_numpy(),
            "end": raw["stop"].astype(np.int64).to_numpy(),
            "arm": raw["arm"].astype(str).to_numpy(),
            "band": raw["band"].to_numpy(),
            "gene_id": raw["GeneID"].astype(str).to_numpy(),
        },
        index=pd.Index(raw["GeneName"].astype(str).to_numpy(), name=None),
    )
    return df[~df.index.duplicated(keep="first")]


def check_positions(table: pd.DataFrame, *, what: str = "gene_positions") -> pd.DataFrame:
    """A user's gene-position table in this module's layout: unique symbols, ``"chr"``-prefixed chromosomes.

    Parameters
    ----------
    table
        Indexed by gene symbol, with columns ``chromosome``, ``start``, ``end`` (chromosomes with or without
        the ``"chr"`` prefix).
    what
        Argument name for error messages.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"`{what}` must be a DataFrame indexed by gene, got {type(table).__name__}.")
    missing = {"chromosome", "start", "end"} - set(table.columns)
    if missing:
        raise ValueError(
            f"`{what}` needs columns 'chromosome', 'start', 'end' (indexed by gene symbol); missing {sorted(missing)}."
        )
    pos = table.loc[~table.index.duplicated(keep="first"), ["chromosome", "start", "end"]].copy()
    pos["chromosome"] = _chr(pos["chromosome"]).where(pos["chromosome"].notna())
    return pos


def _chr(values: pd.Series) -> pd.Series:
    """Chromosome names with the ``"chr"`` prefix infercnvpy expects."""
    return "chr" + values.astype(str).str.replace(r"^chr", "", regex=True)


def add_gene_positions(
    adata: AnnData,
    genome: Genome = "hg38",
    *,
    gene_symbols: str | None = None,
    data_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    overwrite: bool = False,
    copy: bool = False,
) -> AnnData | None:
    """Write ``var["chromosome"]``, ``var["start"]``, ``var["end"]`` (and ``arm``, ``band``) for infercnvpy.

    Genes without a known position get missing values (infercnvpy then leaves them out). Symbols that R
    mangled (``X0610007N19Rik`` for ``0610007N19Rik``) are matched without the leading ``X``.

    Parameters
    ----------
    adata
        The table (e.g. ``sdata.tables["table"]``).
    genome
        ``"hg38"`` or ``"mm10"``, see :func:`gene_positions`.
    gene_symbols
        ``var`` column holding gene symbols; by default ``var_names``.
    data_dir, cache_dir
        Where the annotation is read from, see :func:`gene_positions`.
    overwrite
        Replace existing ``var`` columns of these names.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    The copy when ``copy=True``, else ``None``; writes ``var["chromosome"|"start"|"end"|"arm"|"band"]`` and
    ``uns["gene_positions"]["params"]``.
    """
    if not isinstance(adata, AnnData):
        raise TypeError(f"`adata` must be an AnnData (a table), got {type(adata).__name__}.")
    if gene_symbols is not None and gene_symbols not in adata.var.columns:
        raise KeyError(f"`gene_symbols`={gene_symbols!r} is not a column of `var`; it has {list(adata.var.columns)}.")
    for col in POSITION_COLUMNS:
        check_key_free(adata.var, col, "var", overwrite=overwrite)
    pos = gene_positions(genome, data_dir=data_dir, cache_dir=cache_dir)
    adata = adata.copy() if copy else adata
    symbols = pd.Index(adata.var[gene_symbols].astype(str) if gene_symbols else adata.var_names.astype(str))
    lookup = [s if s in pos.index else _unmangle(s, pos.index) for s in symbols]
    matched = pos.reindex(lookup)
    n = int(matched["chromosome"].notna().sum())
    if n == 0:
        raise ValueError(
            f"None of the {len(symbols)} genes has a position in the {genome} annotation "
            f"(genes look like {list(symbols[:3])}); check `genome` and `gene_symbols`."
        )
    logger.info("%d of %d genes have a %s position.", n, len(symbols), genome)
    adata.var["chromosome"] = pd.Categorical(matched["chromosome"].to_numpy(), categories=pd.unique(pos["chromosome"]))
    adata.var["start"] = matched["start"].to_numpy(dtype=float)
    adata.var["end"] = matched["end"].to_numpy(dtype=float)
    adata.var["arm"] = matched["arm"].to_numpy(dtype=object)
    adata.var["band"] = matched["band"].to_numpy(dtype=object)
    store_params(
        adata, "gene_positions", {"genome": genome, "gene_symbols": gene_symbols}, n_matched=n, source="xclone 0.4.0"
    )
    log_written("var", *POSITION_COLUMNS)
    log_written("uns", "gene_positions")
    return adata if copy else None


def _unmangle(symbol: str, known: pd.Index) -> str:
    m = _R_MANGLED.match(symbol)
    if m and m.group(1) in known:
        return m.group(1)
    return symbol
