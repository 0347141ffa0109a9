"""TCGA whole-slide survival cohorts: HIPT region features + MCAT / PORPOISE survival and genomics tables.

These files cannot be downloaded by hist_sd (the features come from a GPLv3 research repository and the tables
from the MCAT / PORPOISE repositories): they are read from a local folder ``tcga/`` only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hist_sd import _constants as C
from hist_sd.datasets._fetch import PathLike, mirror_only
from hist_sd.io._cohort import Cohort, read_cohort

__all__ = ["TCGA_COHORTS", "tcga"]

logger = logging.getLogger(__name__)

#: Cohorts with HIPT slide features.
TCGA_COHORTS: tuple[str, ...] = ("blca", "brca", "gbmlgg", "luad", "ucec")
#: Cohorts with an MCAT signature table (``mcat_sig/``); the others use the PORPOISE table.
MCAT_COHORTS: tuple[str, ...] = ("blca", "luad", "ucec")
GENOMICS: tuple[str, ...] = ("auto", "mcat", "porpoise")
_TABLE_DIR = {"mcat": "mcat_sig", "porpoise": "porpoise_mutsig"}

LAYOUT = (
    "tcga/hipt_features/<cohort>/<slide_id>.pt (mahmoodlab/HIPT, 3-Self-Supervised-Eval/embeddings_slide_lib/"
    "vit256mean_tcga_slide_embeddings), tcga/mcat_sig/tcga_<cohort>_all_clean.csv.zip (mahmoodlab/MCAT, blca, luad, "
    "ucec), tcga/porpoise_mutsig/tcga_<cohort>_all_clean.csv.zip (mahmoodlab/PORPOISE), "
    "tcga/splits/porpoise/5foldcv/tcga_<cohort>/splits_<k>.csv and tcga/signatures.csv"
)


def _root(data_dir: PathLike | None) -> Path:
    """The ``tcga/`` folder of the local mirror; a clear error when it is not there."""
    hint = (
        f"The TCGA features and tables cannot be downloaded by hist_sd. Put them in a folder `tcga/` laid out as "
        f"{LAYOUT}, and pass the folder that contains `tcga/` as `data_dir=` or set ${C.DATA_DIR_ENV}."
    )
    return mirror_only("tcga", data_dir, hint)


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"The TCGA data folder lacks {what}: {str(path)!r} does not exist. Expected layout: "
                                f"{LAYOUT}.")
    return path


def tcga(
    cohort: str,
    *,
    features: str | PathLike = "hipt",
    genomics: str = "auto",
    data_dir: PathLike | None = None,
    progress: bool = False,
) -> Cohort:
    """A TCGA survival cohort: whole-slide region features, survival, genomics, gene families and 5 folds.

    Reads ``tcga/`` of the local data folder (these data cannot be downloaded): HIPT slide embeddings
    (Chen et al., CVPR 2022; one 192-d vector per 4096 px region at 20x, ``hipt_features/<cohort>/``), the
    MCAT table (``mcat_sig/``, for blca, luad and ucec: ~3,000 signature rnaseq + cnv columns; ucec has cnv only)
    or else the PORPOISE table (``porpoise_mutsig/``: rnaseq, cnv and mutation columns), the 5-fold splits of
    MCAT / PORPOISE (``splits/porpoise/5foldcv/tcga_<cohort>/``) and the six gene families of
    ``signatures.csv``. Slides without a feature file and patients left without any are dropped (see
    :func:`hist_sd.io.read_cohort`).

    Parameters
    ----------
    cohort
        ``"blca"``, ``"brca"``, ``"gbmlgg"``, ``"luad"`` or ``"ucec"`` (case-insensitive).
    features
        ``"hipt"`` (the bundled features) or a folder of per-slide ``.pt`` / ``.h5`` files for the same slides.
    genomics
        ``"auto"`` (MCAT where it exists, else PORPOISE), ``"mcat"`` or ``"porpoise"``; recorded in
        ``patients.uns["hist_sd"]["genomics_source"]`` (``"mcat"`` or ``"porpoise"``; the file is in
        ``uns["hist_sd"]["table"]``).
    data_dir
        The folder holding ``tcga/`` (or ``tcga/`` itself); default ``$HIST_SD_DATA_DIR``.
    progress
        Show a progress bar over slide files.

    Returns
    -------
    A :class:`hist_sd.io.Cohort` named ``"tcga_<cohort>"``.

    Examples
    --------
    >>> import hist_sd as hs
    >>> blca = hs.datasets.tcga("blca")
    >>> blca.n_patients, blca.n_features, blca.n_folds
    (371, 192, 5)
    """
    if not isinstance(cohort, str) or cohort.lower() not in TCGA_COHORTS:
        raise ValueError(f"`cohort` must be one of {', '.join(TCGA_COHORTS)} (case-insensitive), got {cohort!r}.")
    c = cohort.lower()
    if not isinstance(genomics, str) or genomics.lower() not in GENOMICS:
        raise ValueError(f"`genomics` must be one of {', '.join(GENOMICS)}, got {genomics!r}.")
    source = genomics.lower()
    if source == "auto":
        source = "mcat" if c in MCAT_COHORTS else "porpoise"
    elif source == "mcat" and c not in MCAT_COHORTS:
        raise ValueError(f"`genomics`='mcat': the MCAT signature table exists for {', '.join(MCAT_COHORTS)} only, "
                         f"not {c!r}; use 'porpoise' or 'auto'.")
    if isinstance(features, str) and features == "hipt":
        feat_dir = None
    elif isinstance(features, str | Path) or hasattr(features, "__fspath__"):
        feat_dir = Path(features)
        if not feat_dir.is_dir():
            raise ValueError(f"`features` must be 'hipt' or a folder of per-slide feature files, got {features!r} "
                             "(not a folder).")
    else:
        raise TypeError(f"`features` must be 'hipt' or a folder path, got {type(features).__name__}.")

    root = _root(data_dir)
    if feat_dir is None:
        feat_dir = _need(root / "hipt_features" / c, f"the HIPT features of {c!r}")
    rel = f"{_TABLE_DIR[source]}/tcga_{c}_all_clean.csv.zip"
    table = _need(root / rel, f"the {source} table of {c!r}")
    splits = _need(root / "splits" / "porpoise" / "5foldcv" / f"tcga_{c}", f"the 5-fold splits of {c!r}")
    signatures = _need(root / "signatures.csv", "the gene families (signatures.csv)")
    out = read_cohort(feat_dir, table, splits=splits, signatures=signatures, name=f"tcga_{c}", progress=progress)
    meta = out.patients.uns["hist_sd"]
    meta["genomics_source"] = source
    meta["table"] = rel
    meta["features"] = "hipt" if feat_dir == root / "hipt_features" / c else str(feat_dir)
    return out
