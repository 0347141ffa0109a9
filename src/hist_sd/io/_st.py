"""Reader for legacy Spatial Transcriptomics (Ståhl et al. 2016): counts TSV + spot file + H&E image."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._docs import doc_params
from hist_sd.io._build import DEFAULT_SCALE_FACTORS, ImageLike, build_sdata, estimate_mpp, load_rgb, to_csr

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

PathLike = str | os.PathLike[str]


def _parse_ids(ids: pd.Index) -> np.ndarray:
    """``"XxY"`` spot ids -> ``(n, 2)`` float array coordinates (NaN where an id does not parse)."""
    parts = pd.Series(ids.astype(str)).str.split("x", n=1, expand=True)
    if parts.shape[1] != 2:
        return np.full((len(ids), 2), np.nan)
    return np.column_stack([pd.to_numeric(parts[0], errors="coerce"), pd.to_numeric(parts[1], errors="coerce")])


def _read_table(path: PathLike | pd.DataFrame, *, what: str) -> pd.DataFrame:
    if isinstance(path, pd.DataFrame):
        return path
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`{what}`: no file at {str(p)!r}.")
    df = pd.read_csv(p, sep="\t", index_col=None, header=0)
    first = str(df.columns[0])
    if first.startswith("Unnamed") or first == "":
        df = df.set_index(df.columns[0])
        df.index.name = None
    return df


def _label(src: PathLike | pd.DataFrame, what: str) -> str:
    """How messages name an input: the argument, and the file when it is one."""
    return f"`{what}`" if isinstance(src, pd.DataFrame) else f"`{what}` file {str(src)!r}"


def _check_counts(df: pd.DataFrame, label: str) -> None:
    """Refuse non-numeric, NaN / infinite and negative counts, naming the first offending spot and gene."""
    bad_cols = [str(c) for c, t in df.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    if bad_cols:
        raise ValueError(f"{label}: non-numeric gene columns {bad_cols[:5]}; expected counts (spots x genes).")
    values = df.to_numpy(dtype=np.float64)
    for bad, kind in ((~np.isfinite(values), "NaN or infinite"), (values < 0, "negative")):
        if bad.any():
            i, j = (int(v[0]) for v in np.nonzero(bad))
            raise ValueError(
                f"{label} holds {kind} counts ({int(bad.sum())} values, e.g. spot {df.index[i]!r}, gene "
                f"{str(df.columns[j])!r}: {values[i, j]!r}); expected raw counts (non-negative numbers)."
            )


def _drop_duplicates(df: pd.DataFrame, ids: pd.Index, label: str) -> pd.DataFrame:
    """Rows of ``df`` without repeated spot ids: exact repeats are dropped (logged), conflicting ones refused."""
    repeated = ids.duplicated(keep="first")
    if not repeated.any():
        return df
    exact = df.reset_index(drop=True).assign(_spot_id_=np.asarray(ids)).duplicated(keep="first").to_numpy()
    conflicting = ids[repeated & ~exact].unique().tolist()
    if conflicting:
        raise ValueError(
            f"{label} has {len(conflicting)} spot id(s) on several rows with different values: "
            f"{conflicting[:10]}{' ...' if len(conflicting) > 10 else ''}; expected one row per spot."
        )
    logger.warning("%s: %d duplicated spot rows (identical to an earlier row) are dropped.", label, int(repeated.sum()))
    return df[~repeated]


def read_st_counts(counts: PathLike | pd.DataFrame) -> pd.DataFrame:
    """Read a legacy ST count matrix (spots x genes, index ``"XxY"``).

    NaN, infinite or negative counts and spot ids repeated with different counts are errors; rows that
    repeat an earlier row exactly are dropped with a warning.
    """
    df = _read_table(counts, what="counts")
    label = _label(counts, "counts")
    if df.empty:
        raise ValueError(f"{label} has no spots or no genes.")
    df.index = df.index.astype(str)
    _check_counts(df, label)
    return _drop_duplicates(df, df.index, label)


def _spot_ids(spots: pd.DataFrame, count_ids: pd.Index) -> pd.Series:
    """Map spot-file rows to count ids: by the index when it is the id, else by rounding array ``x, y``."""
    if spots.index.astype(str).isin(count_ids).any():
        return pd.Series(spots.index.astype(str), index=spots.index)
    for col in ("x", "y"):
        if col not in spots.columns:
            raise ValueError(f"`spots` needs array coordinate columns 'x' and 'y' (or spot ids as index); missing {col!r}.")
    count_xy = _parse_ids(count_ids)
    lookup = {(round(x, 2), round(y, 2)): cid for (x, y), cid in zip(count_xy, count_ids, strict=True)}
    ids = [lookup.get((round(float(x), 2), round(float(y), 2))) for x, y in zip(spots["x"], spots["y"], strict=True)]
    return pd.Series(ids, index=spots.index, dtype=object)


@doc_params
def read_st(
    counts: PathLike | pd.DataFrame,
    spots: PathLike | pd.DataFrame,
    image: ImageLike | None = None,
    *,
    scale: float = 1.0,
    mpp: float | None = None,
    section: str | None = None,
    patient: str | None = None,
    spot_diameter_um: float = C.ST_SPOT_DIAMETER_UM,
    spot_spacing_um: float = C.ST_SPOT_SPACING_UM,
    only_selected: bool = True,
    scale_factors: Sequence[int] | None = DEFAULT_SCALE_FACTORS,
    lazy: bool = True,
) -> SpatialData:
    """Read a legacy Spatial Transcriptomics section into a SpatialData.

    Parameters
    ----------
    counts
        Count matrix TSV (spots x genes, integer UMIs; spot ids ``"XxY"`` in the first column), or a DataFrame.
    spots
        Spot file TSV with array coordinates ``x, y`` and pixel coordinates ``pixel_x, pixel_y`` (her2st's
        ``*_selection.tsv`` with a ``selected`` column, or a spot table indexed by the same ``"XxY"`` ids).
    image
        The section's H&E image (path or ``(y, x, 3)`` uint8 array). ``None`` reads counts and spots only
        (``mpp`` is then taken from the spot grid).
    scale
        Factor from the spot file's pixel coordinates to the given image (for a resized image).
    mpp
        µm per pixel of ``image``. By default it is estimated from the spot grid (pixels per array step
        against ``spot_spacing_um``).
    section
        Section name (default: the counts file name up to the first dot).
    patient
        Patient id stored in ``obs["patient"]`` (default: the section name).
    spot_diameter_um, spot_spacing_um
        Spot geometry (legacy ST: 100 µm spots, 200 µm apart).
    only_selected
        Drop spots whose ``selected`` flag is 0 when the spot file has one.
    scale_factors
        Image pyramid downscale factors.
    %(lazy)s

    Returns
    -------
    SpatialData with the image ``"{section}_full_image"`` ``(c, y, x)``, spot circles ``"{section}"`` and the
    table ``"table"`` (raw counts in ``.X``; ``obsm["spatial"]`` pixel coordinates of the image; obs
    ``array_row``, ``array_col``, ``in_tissue``, ``section``, ``patient``; scale in ``uns["hist_sd"]``; with an
    image, ``uns["spatial"][section]`` for :func:`scanpy.pl.spatial` / :func:`squidpy.pl.spatial_scatter`: a
    copy of the image of at most 2000 px and its scale factors).

    Negative, NaN or infinite counts and spot ids repeated with different values (in either file) are
    errors naming the file; rows that repeat an earlier row exactly are dropped with a warning.
    """
    if section is None:
        section = Path(counts).name.split(".")[0] if not isinstance(counts, pd.DataFrame) else "section"
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"`scale` must be a positive number, got {scale!r}.")
    cnt = read_st_counts(counts)
    spot_df = _read_table(spots, what="spots")
    for col in ("pixel_x", "pixel_y"):
        if col not in spot_df.columns:
            raise ValueError(f"`spots` needs pixel coordinate columns 'pixel_x' and 'pixel_y'; missing {col!r}.")
    spot_df = spot_df.assign(_id=_spot_ids(spot_df, cnt.index)).dropna(subset=["_id"])
    spot_df = _drop_duplicates(spot_df, pd.Index(spot_df["_id"]), _label(spots, "spots")).set_index("_id")
    if only_selected and "selected" in spot_df.columns:
        spot_df = spot_df[spot_df["selected"].astype(float) > 0]
    common = cnt.index[cnt.index.isin(spot_df.index)]
    if len(common) == 0:
        raise ValueError(
            "`counts` and `spots` have no spot in common: counts ids look like "
            f"{list(cnt.index[:3])}, spot ids like {list(spot_df.index[:3])}."
        )
    if len(common) < len(cnt):
        logger.info("%s: %d of %d count rows have no spot coordinates and are dropped.", section, len(cnt) - len(common), len(cnt))
    cnt = cnt.loc[common]
    sp = spot_df.loc[common]

    array_xy = _parse_ids(common)
    if np.isnan(array_xy).any():
        array_xy = sp[["x", "y"]].to_numpy(float)
    pixel_xy = sp[["pixel_x", "pixel_y"]].to_numpy(float) * scale

    img = load_rgb(image, lazy=lazy) if image is not None else None
    if mpp is None:
        mpp = estimate_mpp(array_xy, pixel_xy, spot_spacing_um)
        logger.info("%s: %.4f µm per pixel estimated from the spot grid.", section, mpp)
    elif not np.isfinite(mpp) or mpp <= 0:
        raise ValueError(f"`mpp` must be a positive number of µm per pixel, got {mpp!r}.")

    var = pd.DataFrame(index=pd.Index(cnt.columns.astype(str), name=None))
    obs = pd.DataFrame(
        {
            "array_row": np.rint(array_xy[:, 1]).astype(int),
            "array_col": np.rint(array_xy[:, 0]).astype(int),
            "array_x": array_xy[:, 0],
            "array_y": array_xy[:, 1],
            "in_tissue": (sp["selected"].to_numpy(int) if "selected" in sp.columns else np.ones(len(sp), int)),
            "section": pd.Categorical([section] * len(sp)),
            "patient": pd.Categorical([patient or section] * len(sp)),
        },
        index=pd.Index(common.astype(str)),
    )
    adata = AnnData(X=to_csr(cnt.to_numpy()), obs=obs, var=var)
    adata.var_names_make_unique()
    return build_sdata(
        image=img,
        xy=pixel_xy,
        adata=adata,
        name=section,
        mpp=mpp,
        spot_diameter_um=spot_diameter_um,
        spot_spacing_um=spot_spacing_um,
        technology="st",
        scale_factors=scale_factors,
        extra_meta={"scale": float(scale)},
    )
