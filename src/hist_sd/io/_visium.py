"""Reader for 10x Visium (Space Ranger output), on top of spatialdata-io's reader."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd.io._build import DEFAULT_SCALE_FACTORS, build_sdata, load_rgb, to_csr

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

PathLike = str | os.PathLike[str]
VisiumImage = Literal["auto", "full", "hires", "lowres"]

_SCALEFACTORS = "scalefactors_json.json"
_POSITIONS = ("tissue_positions_list.csv", "tissue_positions.csv")
_SCALE_KEY = {"hires": "tissue_hires_scalef", "lowres": "tissue_lowres_scalef"}


def _dataset_id(path: Path, counts_file: str, dataset_id: str | None) -> str:
    if dataset_id is not None:
        if not str(dataset_id):
            raise ValueError("`dataset_id` must be a non-empty string.")
        return str(dataset_id)
    prefixed = sorted(p.name for p in path.glob(f"*_{counts_file}"))
    if prefixed:
        return prefixed[0][: -len(f"_{counts_file}")]
    return path.resolve().name


def _check_read_visium_args(
    path: Path, counts_file: str, image: VisiumImage | None, fullres_image_file: PathLike | None
) -> tuple[Path, str | None, Path | None]:
    """Check the folder, its files and the image options; the folder, the image to read, the full-res file."""
    if not path.is_dir():
        raise FileNotFoundError(f"`path`: no Space Ranger output folder at {str(path)!r}.")
    if not (path / counts_file).is_file():
        raise FileNotFoundError(f"`counts_file`: no counts file {counts_file!r} in {str(path)!r}.")
    spatial = path / "spatial"
    if not any((spatial / f).is_file() for f in _POSITIONS):
        raise FileNotFoundError(f"`path`: no spatial/{' or spatial/'.join(_POSITIONS)} in {str(path)!r}.")
    if not (spatial / _SCALEFACTORS).is_file():
        raise FileNotFoundError(f"`path`: no spatial/{_SCALEFACTORS} in {str(path)!r}.")
    if image not in (None, "auto", "full", "hires", "lowres"):
        raise ValueError(f"`image` must be 'auto', 'full', 'hires', 'lowres' or None, got {image!r}.")
    if image == "auto":
        image = "full" if fullres_image_file is not None else "hires"
    full_path: Path | None = None
    if fullres_image_file is not None:
        full_path = Path(fullres_image_file)
        if not full_path.is_absolute() and not full_path.is_file():
            full_path = path / full_path  # relative to the Space Ranger folder when not found from here
        if not full_path.is_file():
            raise FileNotFoundError(f"`fullres_image_file`: no image file at {str(full_path)!r}.")
    if image == "full" and full_path is None:
        raise ValueError("`image='full'` needs `fullres_image_file`.")
    return path, image, full_path


def _read_scalefactors(spatial: Path) -> tuple[dict[str, Any], float]:
    """The scale factors of ``spatial/`` and the spot diameter in full-resolution pixels (checked)."""
    scalefactors = json.loads((spatial / _SCALEFACTORS).read_text())
    diameter_full = float(scalefactors.get("spot_diameter_fullres", float("nan")))
    if not np.isfinite(diameter_full) or diameter_full <= 0:
        raise ValueError(f"{_SCALEFACTORS} has no valid 'spot_diameter_fullres' ({diameter_full!r}).")
    return scalefactors, diameter_full


def _load_image(
    path: Path, image: str | None, full_path: Path | None, scalefactors: dict[str, Any], dataset_id: str
) -> tuple[Any, float, str, str | None]:
    """The image asked for, its scale to full resolution, its coordinate system and its element key."""
    img = None
    scale = 1.0
    coordinate_system = dataset_id
    image_key = None
    if image == "full":
        assert full_path is not None
        img = load_rgb(full_path, what="fullres_image_file", lazy=True)  # a JPEG: decoded by region, on demand
        image_key = f"{dataset_id}_full_image"
    elif image in ("hires", "lowres"):
        png = path / "spatial" / f"tissue_{image}_image.png"
        if not png.is_file():
            raise FileNotFoundError(f"`image`={image!r}: no spatial/{png.name} in {str(path)!r}.")
        scale = float(scalefactors[_SCALE_KEY[image]])
        img = load_rgb(png, what=f"spatial/{png.name}")
        image_key = f"{dataset_id}_{image}_image"
        coordinate_system = f"{dataset_id}_downscaled_{image}"
    return img, scale, coordinate_system, image_key


def _visium_table(src: AnnData, section: str, patient: str | None) -> AnnData:
    """The hist_sd table of spatialdata-io's Visium table: sparse counts and the standard ``obs`` columns."""
    obs = pd.DataFrame(
        {
            "array_row": src.obs["array_row"].to_numpy(int),
            "array_col": src.obs["array_col"].to_numpy(int),
            "in_tissue": src.obs["in_tissue"].to_numpy(int),
            "section": pd.Categorical([section] * src.n_obs),
            "patient": pd.Categorical([patient or section] * src.n_obs),
        },
        index=pd.Index(src.obs_names.astype(str)),
    )
    var = src.var.drop(columns=[c for c in src.var.columns if c.startswith("_")]).copy()
    return AnnData(X=to_csr(src.X), obs=obs, var=var)


def read_visium(
    path: PathLike,
    *,
    dataset_id: str | None = None,
    image: VisiumImage | None = "auto",
    fullres_image_file: PathLike | None = None,
    counts_file: str = "filtered_feature_bc_matrix.h5",
    section: str | None = None,
    patient: str | None = None,
    scale_factors: Sequence[int] | None = DEFAULT_SCALE_FACTORS,
) -> SpatialData:
    """Read a 10x Visium Space Ranger output folder into a SpatialData.

    Counts, spot positions and scale factors are read with :func:`spatialdata_io.visium`; the result is
    laid out like :func:`hist_sd.io.read_st` so that every later step treats both technologies alike.

    Parameters
    ----------
    path
        Space Ranger ``outs/`` folder with the counts file and ``spatial/`` (``tissue_positions*.csv``,
        ``scalefactors_json.json``, ``tissue_hires_image.png``, ``tissue_lowres_image.png``).
    dataset_id
        Name of the elements (shapes ``dataset_id``, image ``f"{dataset_id}_{full|hires|lowres}_image"``);
        default: the prefix of a ``<id>_filtered_feature_bc_matrix.h5`` counts file, else the folder name.
    image
        Which image becomes the table's image: ``"full"`` (``fullres_image_file``, the microscope image),
        ``"hires"`` or ``"lowres"`` (Space Ranger's downscaled PNGs), ``"auto"`` (full resolution when
        ``fullres_image_file`` is given, else hires) or ``None`` (no image; coordinates in full-resolution
        pixels).
    fullres_image_file
        The full-resolution H&E image: absolute, relative to the current directory, or relative to ``path``.
        A JPEG is read lazily (pyvips; decoded by region when patches are cut), other formats whole.
    counts_file
        Counts file name inside ``path``.
    section
        Section name stored in ``obs["section"]`` (default: ``dataset_id``).
    patient
        Patient id stored in ``obs["patient"]`` (default: the section name).
    scale_factors
        Image pyramid downscale factors (``None``: one scale).

    Returns
    -------
    SpatialData with the image (when asked for), spot circles ``dataset_id`` and the table ``"table"``: raw
    counts (sparse) in ``.X``, ``obsm["spatial"]`` spot centres in pixels of that image, obs ``array_row``,
    ``array_col``, ``in_tissue``, ``section``, ``patient``, and ``uns["hist_sd"]`` (µm per pixel of the image
    = 55 µm / spot diameter in its pixels); with an image, ``uns["spatial"][section]`` (a copy of that image of
    at most 2000 px and its scale factors, for :func:`scanpy.pl.spatial` / :func:`squidpy.pl.spatial_scatter`).
    Coordinate systems are named as in spatialdata-io: ``dataset_id`` for full-resolution pixels,
    ``f"{dataset_id}_downscaled_hires"`` / ``..._lowres`` for the PNGs.
    """
    import spatialdata_io as sdio
    from spatialdata.transformations import Scale, set_transformation

    path, image, full_path = _check_read_visium_args(Path(path), counts_file, image, fullres_image_file)
    spatial = path / "spatial"

    dataset_id = _dataset_id(path, counts_file, dataset_id)
    section = section or dataset_id
    scalefactors, diameter_full = _read_scalefactors(spatial)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = sdio.visium(path, dataset_id=dataset_id, counts_file=counts_file)
    src = raw.tables["table"]
    xy_full = np.asarray(src.obsm["spatial"], dtype=float)

    img, scale, coordinate_system, image_key = _load_image(path, image, full_path, scalefactors, dataset_id)
    mpp = C.VISIUM_SPOT_DIAMETER_UM / (diameter_full * scale)

    adata = _visium_table(src, section, patient)
    sdata = build_sdata(
        image=img,
        xy=xy_full * scale,
        adata=adata,
        name=dataset_id,
        mpp=mpp,
        spot_diameter_um=C.VISIUM_SPOT_DIAMETER_UM,
        spot_spacing_um=C.VISIUM_SPOT_SPACING_UM,
        technology="visium",
        image_key=image_key,
        shapes_key=dataset_id,
        coordinate_system=coordinate_system,
        scale_factors=scale_factors,
        extra_meta={"scale": scale, "spot_diameter_fullres": diameter_full},
        library_id=section,
    )
    if scale != 1.0:  # also place the downscaled image and the spots in full-resolution pixels
        to_full = Scale(np.array([1.0 / scale, 1.0 / scale]), axes=("y", "x"))
        for element in (sdata.images[image_key], sdata.shapes[dataset_id]):
            set_transformation(element, to_full, to_coordinate_system=dataset_id)
    logger.info("%s: %d spots x %d genes, %.4g µm per pixel of %s.", section, sdata.tables["table"].n_obs,
                sdata.tables["table"].n_vars, mpp, image_key or "the full-resolution frame")
    return sdata
