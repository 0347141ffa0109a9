"""Mouse olfactory bulb, legacy ST (Ståhl et al., Science 2016): replicates 1, 2 and 11."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hist_sd import _constants as C
from hist_sd._core._data import data_dir as _env_data_dir
from hist_sd._core._runtime import progress as _progress
from hist_sd.datasets._fetch import PathLike, mirror_root
from hist_sd.datasets._her2st import check_sections
from hist_sd.io._build import DEFAULT_SCALE_FACTORS
from hist_sd.io._st import read_st

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

MOB_SECTIONS: tuple[str, ...] = ("Rep1", "Rep2", "Rep11")
MOB_FOLDER = "mob_stahl2016"

_SOURCES = (
    "counts of Rep1/Rep2 from ludvigla/spaceST (commit d9ecf528, data/MOB.RData), Rep11 from almaan/sepal "
    "(commit 9befea4b, data/real/mob.tsv.gz), images from tare/Splotch (commit 57929585, "
    "tutorials/olfactory_bulb_st/images/{01,02,11}.jpg)"
)


def mob(
    sections: str | Sequence[str] | None = None,
    *,
    data_dir: PathLike | None = None,
    scale_factors: Sequence[int] | None = DEFAULT_SCALE_FACTORS,
    progress: bool = False,
) -> dict[str, SpatialData]:
    """Mouse olfactory bulb sections profiled with legacy Spatial Transcriptomics (Ståhl et al., Science 2016).

    Replicates 1, 2 and 11 with their H&E images (~2.75 µm per pixel, ~16,000 genes, 100 µm spots on a
    200 µm grid): a second, non-cancer tissue at low resolution.

    The public sources hold these sections in three different forms (an R workspace, a TSV, JPEGs whose
    spot positions follow from the array grid), so there is no byte-for-byte copy that a checksum could pin:
    this dataset is read only from a local mirror in the converted layout ``mob_stahl2016/counts/<S>.tsv.gz``
    (spots x genes, index ``"XxY"`` float array coordinates), ``mob_stahl2016/spots/<S>.tsv`` (``x, y,
    pixel_x, pixel_y``) and ``mob_stahl2016/images/<S>.jpg``. All three sections need the mirror.

    Parameters
    ----------
    sections
        ``"Rep1"``, ``"Rep2"``, ``"Rep11"`` or a list of them (all three by default).
    data_dir
        Folder holding ``mob_stahl2016/`` (overrides ``$HIST_SD_DATA_DIR``).
    scale_factors
        Image pyramid downscale factors (``None``: full resolution only).
    progress
        Show a progress bar over sections.

    Returns
    -------
    ``{section: SpatialData}`` in the layout of :func:`hist_sd.io.read_st` (``patient`` = section).
    """
    names = check_sections(sections, MOB_SECTIONS, dataset="mob")
    if _env_data_dir(data_dir) is None:
        raise FileNotFoundError(
            f"The mouse olfactory bulb data are read from a local mirror only: pass `data_dir=` or set "
            f"${C.DATA_DIR_ENV} to a folder holding {MOB_FOLDER}/ (counts/, spots/, images/). Sources: {_SOURCES}."
        )
    root = mirror_root(MOB_FOLDER, data_dir)
    assert root is not None
    out: dict[str, SpatialData] = {}
    for section in _progress(names, enabled=progress, desc="mob"):
        files = {
            "counts": root / "counts" / f"{section}.tsv.gz",
            "spots": root / "spots" / f"{section}.tsv",
            "image": root / "images" / f"{section}.jpg",
        }
        for what, path in files.items():
            if not path.is_file():
                raise FileNotFoundError(f"The mob mirror {str(root)!r} has no {what} file {path.name!r} for {section}.")
        out[section] = read_st(
            files["counts"],
            files["spots"],
            files["image"],
            section=section,
            patient=section,
            scale_factors=scale_factors,
        )
    return out
