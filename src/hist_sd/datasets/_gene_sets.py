"""Prior-knowledge gene sets for enrichment, read offline from a local mirror (``gene_sets/``).

The files are the public releases listed in the data mirror's README: the 50 MSigDB hallmarks (as shipped by
SurvPath), Enrichr's ``GO_Biological_Process_2023`` and ``KEGG_2021_Human`` libraries (as shipped by blitzgsea
1.3.54) and the DoRothEA human TF regulons (GPL-3). hist_sd does not download them: none is published as a
single file at a pinned, checksummed URL, so they are read from ``gene_sets/`` of the folder given as
``data_dir`` or ``$HIST_SD_DATA_DIR``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hist_sd import _constants as C
from hist_sd.datasets._fetch import PathLike, mirror_only

__all__ = ["GENE_SET_SOURCES", "gene_sets"]

logger = logging.getLogger(__name__)

#: Source name -> file inside ``gene_sets/`` of the local mirror.
GENE_SET_SOURCES: dict[str, str] = {
    "hallmarks": "msigdb_hallmarks/hallmarks_signatures.csv",
    "go_bp": "enrichr/GO_Biological_Process_2023",
    "kegg": "enrichr/KEGG_2021_Human",
    "dorothea": "dorothea/dorothea_hs.csv.gz",
}
#: DoRothEA confidence levels.
DOROTHEA_LEVELS: tuple[str, ...] = ("A", "B", "C", "D", "E")


def gene_sets(
    source: str = "hallmarks",
    *,
    confidence: Sequence[str] = ("A", "B", "C"),
    data_dir: PathLike | None = None,
) -> pd.DataFrame:
    """A gene-set collection as a decoupler network (one row per set member).

    Parameters
    ----------
    source
        ``"hallmarks"`` (the 50 MSigDB hallmarks), ``"go_bp"`` (GO Biological Process 2023, Enrichr),
        ``"kegg"`` (KEGG 2021 human, Enrichr) or ``"dorothea"`` (DoRothEA human TF regulons, signed).
    confidence
        DoRothEA only: the confidence levels kept (``"A"`` most, ``"E"`` least supported).
    data_dir
        Folder holding ``gene_sets/`` (overrides ``$HIST_SD_DATA_DIR``). The files are never downloaded.

    Returns
    -------
    DataFrame with columns ``source`` (set name, or the TF), ``target`` (gene symbol) and ``weight`` (1, or the
    DoRothEA mode of regulation ±1), without duplicated pairs: the ``net`` of ``decoupler.mt.*`` and of
    :func:`hist_sd.tl.enrichment`.

    Examples
    --------
    >>> import hist_sd as hs
    >>> net = hs.datasets.gene_sets("hallmarks")  # doctest: +SKIP
    >>> net["source"].nunique()  # doctest: +SKIP
    50
    """
    if not isinstance(source, str) or source not in GENE_SET_SOURCES:
        raise ValueError(f"`source` must be one of {sorted(GENE_SET_SOURCES)}, got {source!r}.")
    path = _locate(GENE_SET_SOURCES[source], data_dir)
    if source == "hallmarks":
        net = _read_columns(path)
    elif source == "dorothea":
        net = _read_dorothea(path, confidence)
    else:
        net = _read_gmt(path)
    net = net.dropna().drop_duplicates(["source", "target"]).reset_index(drop=True)
    if net.empty:
        raise ValueError(f"{str(path)!r} holds no gene set (is it the {source!r} file of the mirror?).")
    logger.info("%s: %d sets, %d genes.", source, net["source"].nunique(), net["target"].nunique())
    return net


def _locate(rel: str, data_dir: PathLike | None) -> Path:
    hint = (
        f"hist_sd does not download gene sets: put the mirror's `gene_sets/` folder (files "
        f"{sorted(GENE_SET_SOURCES.values())}) in a folder and pass that folder as `data_dir=` or set "
        f"${C.DATA_DIR_ENV}."
    )
    root = mirror_only("gene_sets", data_dir, hint)
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(f"The gene-set folder {str(root)!r} has no file {rel!r}. {hint}")
    return path


def _read_columns(path: Path) -> pd.DataFrame:
    """One column per set, its genes down the rows (padded with empty cells)."""
    wide = pd.read_csv(path, dtype=str)
    long = wide.melt(var_name="source", value_name="target").dropna()
    long["target"] = long["target"].str.strip()
    long = long[long["target"] != ""]
    return long.assign(weight=1.0)[["source", "target", "weight"]]


def _read_gmt(path: Path) -> pd.DataFrame:
    """Enrichr's text libraries: ``name<TAB>description<TAB>gene<TAB>gene...`` per line."""
    rows: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or not fields[0].strip():
                continue
            name = fields[0].strip()
            rows.extend((name, g.strip()) for g in fields[2:] if g.strip())
    return pd.DataFrame(rows, columns=["source", "target"]).assign(weight=1.0)


def _read_dorothea(path: Path, confidence: Sequence[str]) -> pd.DataFrame:
    levels = [confidence] if isinstance(confidence, str) else list(confidence)
    bad = [c for c in levels if c not in DOROTHEA_LEVELS]
    if not levels or bad:
        raise ValueError(f"`confidence` must be a non-empty subset of {list(DOROTHEA_LEVELS)}, got {confidence!r}.")
    raw = pd.read_csv(path)
    missing = {"tf", "confidence", "target", "mor"} - set(raw.columns)
    if missing:
        raise ValueError(f"{str(path)!r} is not a DoRothEA table; it lacks {sorted(missing)}.")
    raw = raw[raw["confidence"].isin(levels)]
    return pd.DataFrame({"source": raw["tf"].astype(str), "target": raw["target"].astype(str),
                         "weight": raw["mor"].astype(float)})
