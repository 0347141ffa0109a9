"""HER2-positive breast cancer, legacy ST (Andersson et al., Nat Commun 2021): 30 sections of patients B-H."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hist_sd._core._runtime import progress as _progress
from hist_sd.datasets._fetch import HER2ST, PathLike, locate, mirror_root
from hist_sd.io._build import DEFAULT_SCALE_FACTORS
from hist_sd.io._st import read_st

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

#: The 30 sections of patients B-H (patient A is not public).
HER2ST_SECTIONS: tuple[str, ...] = tuple(
    [f"{p}{i}" for p in "BCD" for i in range(1, 7)] + [f"{p}{i}" for p in "EFGH" for i in range(1, 4)]
)
#: Sections with a pathologist annotation (``ST-pat/lbl``).
HER2ST_LABELLED: tuple[str, ...] = ("B1", "C1", "D1", "E1", "F1", "G2", "H1")
#: Sections whose H&E image is published in the repository.
HER2ST_IMAGES: dict[str, str] = {
    "B4": "data/ST-imgs/B/B4/BT10737_D2_HE.jpg",
    "C2": "data/ST-imgs/C/C2/5714_HE_BT_C2.jpg",
    "C3": "data/ST-imgs/C/C3/5714_HE_BT_D1.jpg",
    "C4": "data/ST-imgs/C/C4/5714_HE_BT_D2.jpg",
    "C5": "data/ST-imgs/C/C5/5714_HE_BT_E1.jpg",
    "C6": "data/ST-imgs/C/C6/5714_HE_BT_E2.jpg",
}
LABEL_KEY = "label"


def check_sections(sections: str | Iterable[str] | None, valid: Sequence[str], *, dataset: str) -> list[str]:
    """Normalise ``sections`` (``None`` = all) and reject unknown names with the list of valid ones."""
    if sections is None:
        return list(valid)
    if isinstance(sections, str):
        sections = [sections]
    sections = list(sections)
    if not sections:
        raise ValueError(f"`sections` is empty; pick from {', '.join(valid)} (or None for all).")
    unknown = [s for s in sections if s not in valid]
    if unknown:
        raise ValueError(f"`sections`: unknown {dataset} section(s) {unknown}; valid names are {', '.join(valid)}.")
    return list(dict.fromkeys(sections))


def _mirror_image(root: Path, section: str) -> Path | None:
    """An image of ``section`` in a local mirror: the registered file, else the one JPEG of its folder."""
    rel = HER2ST_IMAGES.get(section)
    if rel is not None and (root / rel).is_file():
        return root / rel
    folder = root / "data" / "ST-imgs" / section[0] / section
    found = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff"))
    if len(found) > 1:
        logger.warning("%s: several images in %s; using %s.", section, folder, found[0].name)
    return found[0] if found else None


def read_labels(path: PathLike, obs_names: pd.Index) -> pd.Categorical:
    """Pathologist labels of ``ST-pat/lbl/<S>_labeled_coordinates.tsv`` aligned to ``obs_names`` (``"XxY"``).

    The file's array coordinates ``x, y`` are rounded to the nearest integer to form the spot id; spots
    without a label get NaN.
    """
    lbl = pd.read_csv(path, sep="\t")
    for col in ("x", "y", "label"):
        if col not in lbl.columns:
            raise ValueError(f"Label file {str(path)!r} has no column {col!r}.")
    lbl = lbl.dropna(subset=["x", "y"])
    ids = [f"{int(np.rint(x))}x{int(np.rint(y))}" for x, y in zip(lbl["x"], lbl["y"], strict=True)]
    mapping = pd.Series(lbl["label"].astype(str).to_numpy(), index=ids)
    mapping = mapping[~mapping.index.duplicated(keep="first")]
    values = mapping.reindex(pd.Index(obs_names).astype(str))
    return pd.Categorical(values, categories=sorted(mapping.unique()))


def her2st(
    sections: str | Sequence[str] | None = None,
    *,
    data_dir: PathLike | None = None,
    images_only: bool = False,
    cache_dir: PathLike | None = None,
    labels: bool = True,
    scale_factors: Sequence[int] | None = DEFAULT_SCALE_FACTORS,
    progress: bool = False,
) -> dict[str, SpatialData]:
    """HER2-positive breast tumours profiled with legacy Spatial Transcriptomics (Andersson et al., Nat Commun 2021).

    30 sections of 7 patients (B-H), ~15,000 genes, 100 µm spots on a 200 µm grid. Only B4 and the serial
    sections C2-C6 come with their H&E image (~0.69 µm per pixel); the other sections are returned with
    counts and spot circles but no image (µm per pixel then follows from the spot grid of the spot file's
    pixel coordinates). Seven sections (B1, C1, D1, E1, F1, G2, H1) carry the pathologist's annotation in
    ``obs["label"]``.

    Files come from a local mirror when ``data_dir`` or ``$HIST_SD_DATA_DIR`` is set (a folder holding
    ``her2st/data/...`` in the repository's layout), else they are downloaded from GitHub
    (almaan/her2st at a pinned commit), checked against their sha256 and cached.

    Parameters
    ----------
    sections
        Section name(s), e.g. ``"B4"`` or ``["C2", "C3"]``; all 30 (or, with ``images_only``, the six with an
        image) by default.
    data_dir
        Local mirror (overrides ``$HIST_SD_DATA_DIR``).
    images_only
        Only sections with an H&E image; asking for a section without one is then an error.
    cache_dir
        Download cache (default ``$HIST_SD_CACHE_DIR`` or ``~/.cache/hist_sd``).
    labels
        Add the pathologist labels as ``obs["label"]`` (categorical, NaN for unlabelled spots) where available.
    scale_factors
        Image pyramid downscale factors (``None``: full resolution only, faster to build and write).
    progress
        Show a progress bar over sections.

    Returns
    -------
    ``{section: SpatialData}`` in the layout of :func:`hist_sd.io.read_st` (obs ``patient`` = first letter
    of the section name).
    """
    root = mirror_root(HER2ST.name, data_dir)
    names = check_sections(sections, HER2ST_SECTIONS, dataset="her2st")

    def image_of(section: str) -> Path | None:
        if root is not None:
            found = _mirror_image(root, section)
            if found is None and section in HER2ST_IMAGES:
                logger.warning("%s: the local mirror lacks the H&E image %s; reading it without.", section, HER2ST_IMAGES[section])
            return found
        rel = HER2ST_IMAGES.get(section)
        return locate(HER2ST, rel, cache_dir=cache_dir) if rel is not None else None

    if images_only:
        with_image = [s for s in HER2ST_SECTIONS if (_mirror_image(root, s) if root is not None else s in HER2ST_IMAGES)]
        if sections is None:
            names = with_image
        else:
            missing = [s for s in names if s not in with_image]
            if missing:
                raise ValueError(
                    f"`sections` {missing} have no H&E image (`images_only=True`); sections with one: "
                    f"{', '.join(with_image)}."
                )

    out: dict[str, SpatialData] = {}
    for section in _progress(names, enabled=progress, desc="her2st"):
        counts = locate(HER2ST, f"data/ST-cnts/{section}.tsv.gz", data_dir=data_dir, cache_dir=cache_dir)
        spots = locate(HER2ST, f"data/ST-spotfiles/{section}_selection.tsv", data_dir=data_dir, cache_dir=cache_dir)
        image = image_of(section)
        sdata = read_st(
            counts, spots, image, section=section, patient=section[0], scale_factors=scale_factors
        )
        if labels and section in HER2ST_LABELLED:
            rel = f"data/ST-pat/lbl/{section}_labeled_coordinates.tsv"
            path = locate(HER2ST, rel, data_dir=data_dir, cache_dir=cache_dir)
            table = sdata.tables["table"]
            table.obs[LABEL_KEY] = read_labels(path, table.obs_names)
            n_lab = int(table.obs[LABEL_KEY].notna().sum())
            logger.info("%s: %d of %d spots carry a pathologist label.", section, n_lab, table.n_obs)
        out[section] = sdata
    return out
