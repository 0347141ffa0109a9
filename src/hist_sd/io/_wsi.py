"""Whole-slide images (Aperio SVS, tiled pyramidal TIFF, OME-TIFF) as lazy SpatialData pyramids.

The slide is opened with `tiffslide <https://github.com/Bayer-Group/tiffslide>`_: a maintained, pure-Python
reader built on tifffile (already a dependency of the scientific Python stack) that exposes every pyramid level
as a zarr array decoding only the tiles a read touches. It opens the formats H&E slides come in (SVS, generic
and OME pyramidal TIFF, NDPI, SCN, BIF, Philips TIFF) without a system library, so it installs with pip alone
on every platform; openslide-python needs the compiled OpenSlide library (``openslide-bin``), and LazySlide /
wsidata pull in a second whole-slide data model on top of SpatialData.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hist_sd import _constants as C
from hist_sd.io._build import IMAGE_MPP, _full_res_coords
from hist_sd.io._image import _check_mpp

if TYPE_CHECKING:
    from spatialdata import SpatialData
    from tiffslide import TiffSlide

logger = logging.getLogger("hist_sd")

#: Key of ``sdata.attrs["hist_sd"]`` describing the slides read by :func:`read_wsi` (by image element name).
WSI_KEY = C.WSI_KEY
#: Target side (px) of a dask chunk of a slide level, rounded to whole tiles of the file.
CHUNK_PX = 2048
#: Resolution metadata coarser than this (µm per pixel) is a print or screen resolution (72 dpi = 353 µm), not a
#: microscope's, and is ignored.
MAX_PLAUSIBLE_MPP = 50.0
#: Relative difference between ``mpp=`` and the slide's metadata above which a warning is logged.
MPP_TOLERANCE = 0.005

_OPEN_MAX = 16
_open_slides: OrderedDict[tuple[str, int, int], TiffSlide] = OrderedDict()
_open_lock = threading.Lock()


def open_slide(path: str | os.PathLike[str]) -> TiffSlide:
    """A :class:`tiffslide.TiffSlide` for ``path``, shared by every level array of this process.

    Opened slides are cached by path, size and modification time (a rewritten file is opened again); at most
    ``_OPEN_MAX`` stay open.
    """
    import tiffslide

    p = os.fspath(path)
    st = os.stat(p)
    key = (p, st.st_size, st.st_mtime_ns)
    with _open_lock:
        slide = _open_slides.get(key)
        if slide is not None:
            _open_slides.move_to_end(key)
            return slide
    slide = tiffslide.TiffSlide(p)
    with _open_lock:
        _open_slides[key] = slide
        evicted = [_open_slides.popitem(last=False)[1] for _ in range(len(_open_slides) - _OPEN_MAX)]
    for old in evicted:  # a read still using one reopens the file (SlideLevel.__getitem__)
        old.close()
    return slide


@atexit.register
def _close_all() -> None:
    """Close the cached slides when the interpreter exits (no unclosed-file warnings)."""
    with _open_lock:
        slides = list(_open_slides.values())
        _open_slides.clear()
    for slide in slides:
        slide.close()


def _is_open(slide: TiffSlide) -> bool:
    with _open_lock:
        return any(s is slide for s in _open_slides.values())


def _forget(path: str | os.PathLike[str]) -> None:
    """Drop ``path`` from the cache of open slides (after it failed to read)."""
    p = os.fspath(path)
    with _open_lock:
        dropped = [_open_slides.pop(k) for k in [k for k in _open_slides if k[0] == p]]
    for slide in dropped:
        slide.close()


class SlideLevel:
    """One pyramid level of a slide as a ``(c, y, x)`` uint8 array source for :func:`dask.array.from_array`.

    Indexing decodes only the file's tiles that the selection touches (tiffslide's zarr view of the level).
    The object holds the path and the level number only, so it pickles (dask.distributed workers reopen the
    file).

    Parameters
    ----------
    path
        The slide file.
    level
        Pyramid level (0: full resolution).
    shape
        ``(3, height, width)`` of the level.
    planar
        The file stores the level as ``(c, y, x)`` (OME-TIFF planar) rather than ``(y, x, c)``.
    """

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, path: str, level: int, shape: tuple[int, int, int], *, planar: bool = False) -> None:
        self.path = path
        self.level = int(level)
        self.shape = tuple(int(v) for v in shape)
        self.planar = bool(planar)

    def __repr__(self) -> str:
        return f"SlideLevel({self.path!r}, level={self.level}, shape={self.shape})"

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        if len(key) != 3:
            raise IndexError(f"A slide level is indexed along (c, y, x), got {key!r}.")
        # every index becomes the slice it spans (the channel slice never reaches the alpha sample of an RGBA
        # file); integers and integer arrays are then applied to the block read
        spans, local = [], []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, slice):
                spans.append(slice(*k.indices(n)))
                local.append(slice(None))
                continue
            idx = np.asarray(k)
            if idx.dtype.kind not in "iu" or idx.ndim > 1 or idx.size == 0:
                raise IndexError(f"A slide level is indexed with slices, integers or integer lists, got {key!r}.")
            idx = idx % n
            lo = int(idx.min())
            spans.append(slice(lo, int(idx.max()) + 1))
            local.append(idx - lo)
        out = self._read_any(*spans)
        if all(isinstance(k, slice) for k in local):
            return out
        for axis in (2, 1, 0):  # one axis at a time: orthogonal (outer) indexing, as dask expects
            if not isinstance(local[axis], slice):
                out = np.take(out, local[axis], axis=axis)
        return np.asarray(out, order="C")  # keeps 0-d results 0-d

    def _read_any(self, cs: slice, ys: slice, xs: slice) -> np.ndarray:
        slide = open_slide(self.path)
        try:
            return self._read(slide, cs, ys, xs)
        except Exception:
            if _is_open(slide):
                raise
            return self._read(open_slide(self.path), cs, ys, xs)  # closed by the cache meanwhile: reopen

    def _read(self, slide: TiffSlide, cs: slice, ys: slice, xs: slice) -> np.ndarray:
        arr = slide.zarr_group[str(self.level)]
        if self.planar:
            return np.ascontiguousarray(arr[cs, ys, xs])
        return np.ascontiguousarray(np.moveaxis(arr[ys, xs, cs], -1, 0))


def read_wsi(
    path: str | os.PathLike[str],
    *,
    mpp: float | None = None,
    name: str | None = None,
) -> SpatialData:
    """Read a whole-slide image (SVS, tiled pyramidal TIFF, OME-TIFF) as a lazy multiscale SpatialData image.

    Nothing is decoded here: every level of the slide's own pyramid becomes a dask array whose reads decode
    only the tiles they touch, so a 100,000 px slide opens in milliseconds and :func:`hist_sd.pp.detect_tissue`
    / :func:`hist_sd.pp.tile` can work on a coarse level while :func:`hist_sd.pp.features` reads full-resolution
    patches. The slide is opened with tiffslide, a maintained pure-Python reader on tifffile (no system
    library to install, unlike OpenSlide), which opens Aperio SVS, generic and OME pyramidal TIFF, Hamamatsu
    NDPI, Leica SCN, Ventana BIF and Philips TIFF files.

    Parameters
    ----------
    path
        The slide file.
    mpp
        µm per pixel of the full-resolution level. By default read from the slide's metadata (Aperio ``MPP``,
        the TIFF resolution tags, OME ``PhysicalSizeX``); a slide without it is refused unless ``mpp`` is
        given. When both exist and differ, ``mpp`` is used and a warning is logged. Resolution tags coarser
        than 50 µm per pixel (a print or screen resolution such as 72 dpi) count as missing.
    name
        Section name; the image is called ``f"{name}_full_image"`` (default: the file name up to its first dot).

    Returns
    -------
    SpatialData with one multiscale image ``(c, y, x)`` uint8 (levels ``scale0`` .. ``scaleK``, the slide's
    pyramid, each with its scale transform to full-resolution pixels in the coordinate system ``"global"``).
    ``sdata.attrs["hist_sd"]["image_mpp"]`` records the scale (:func:`hist_sd.io.image_mpp`) and
    ``sdata.attrs["hist_sd"]["wsi"][image_key]`` the file, vendor, level downsamples and where ``mpp`` came from.
    """
    from spatialdata import SpatialData

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`path`: no slide file at {str(p)!r}.")
    if name is None:
        name = p.name.split(".")[0]
    if not name:
        raise ValueError("`name` must be a non-empty string.")
    slide = _open_checked(p)
    shapes, planar = _level_shapes(slide, p)
    meta_mpp = _metadata_mpp(slide, p)
    mpp, source = _resolve_mpp(mpp, meta_mpp, p)
    key = f"{name}_full_image"
    tree = _pyramid(str(p.resolve()), shapes, planar=planar, slide=slide)
    downsamples = [round(shapes[0][2] / s[2], 6) for s in shapes]
    info = {
        "path": str(p.resolve()),
        "vendor": str(slide.properties.get("tiffslide.vendor") or "generic-tiff"),
        "level_downsamples": downsamples,
        "mpp_source": source,
    }
    sdata = SpatialData(images={key: tree}, attrs={C.UNS_KEY: {IMAGE_MPP: {key: mpp}, WSI_KEY: {key: info}}})
    logger.info(
        "%s: %d x %d px slide at %.4g µm per pixel (%s), %d pyramid level(s), downsamples %s.",
        key, shapes[0][2], shapes[0][1], mpp, source, len(shapes), [f"{d:g}" for d in downsamples],
    )
    return sdata


def _open_checked(path: Path) -> TiffSlide:
    """Open the slide and decode one tile of its coarsest level; a clear error naming the file otherwise."""
    try:
        slide = open_slide(path)
        _ = slide.properties  # parsed lazily: vendor metadata and level geometry
        level = slide.level_count - 1
        arr = slide.zarr_group[str(level)]
        _ = np.asarray(arr[tuple(slice(max(n - 1, 0), n) for n in arr.shape)])  # the last tile of the file
    except Exception as err:  # tifffile / tiffslide / zarr raise many types for a file that is not a slide
        _forget(path)
        raise ValueError(
            f"`path`: {str(path)!r} ({path.stat().st_size} bytes) could not be read as a whole-slide image "
            f"({type(err).__name__}: {err}). Expected an Aperio SVS, tiled pyramidal TIFF or OME-TIFF file; is it "
            "truncated or corrupt? For a plain JPEG/PNG use `hs.io.read_image`."
        ) from err
    return slide


def _level_shapes(slide: TiffSlide, path: Path) -> tuple[list[tuple[int, int, int]], bool]:
    """``(3, height, width)`` of every level and whether the file stores them planar ``(c, y, x)``."""
    axes = str(slide.properties.get("tiffslide.series-axes") or "")
    shapes = []
    for level in range(slide.level_count):
        arr = slide.zarr_group[str(level)]
        if axes == "YXS" and arr.ndim == 3 and arr.shape[2] in (3, 4):
            h, w = int(arr.shape[0]), int(arr.shape[1])
        elif axes == "CYX" and arr.ndim == 3 and arr.shape[0] in (3, 4):
            h, w = int(arr.shape[1]), int(arr.shape[2])
        else:
            raise ValueError(
                f"`path`: {str(path)!r} is not an RGB slide (axes {axes!r}, level shape {tuple(arr.shape)}); an "
                "H&E slide with 3 colour samples per pixel is expected."
            )
        if np.dtype(arr.dtype) != np.uint8:
            raise ValueError(
                f"`path`: {str(path)!r} holds {arr.dtype} pixels; an 8-bit RGB H&E slide (uint8) is expected."
            )
        shapes.append((3, h, w))
    return shapes, axes == "CYX"


def _metadata_mpp(slide: TiffSlide, path: Path) -> float | None:
    """µm per pixel of level 0 from the slide's metadata (vendor, TIFF resolution tags, OME-XML); ``None``."""
    props = slide.properties
    values = [props.get("tiffslide.mpp-x"), props.get("tiffslide.mpp-y")]
    found = [float(v) for v in values if v is not None and np.isfinite(float(v)) and float(v) > 0]
    if not found:
        found = _ome_mpp(slide)
    if not found:
        return None
    if len(found) == 2 and abs(found[0] - found[1]) > MPP_TOLERANCE * found[0]:
        logger.warning("%s: pixels are not square (%.4g x %.4g µm); their mean is used.", path.name, *found)
    value = float(np.mean(found))
    if value > MAX_PLAUSIBLE_MPP:
        logger.warning(
            "%s: the resolution metadata says %.4g µm per pixel, a print or screen resolution rather than a "
            "microscope's; it is ignored.", path.name, value,
        )
        return None
    return value


_UNIT_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


def _ome_mpp(slide: TiffSlide) -> list[float]:
    """``PhysicalSizeX`` / ``PhysicalSizeY`` of the first OME ``Pixels`` element, in µm (``[]`` without)."""
    from xml.etree import ElementTree

    try:
        tf = slide.ts_tifffile
        xml = tf.ome_metadata if tf.is_ome else None
    except (RuntimeError, NotImplementedError, AttributeError):
        return []
    if not xml:
        return []
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return []
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return []
    out = []
    for ax in ("X", "Y"):
        size, unit = pixels.get(f"PhysicalSize{ax}"), pixels.get(f"PhysicalSize{ax}Unit", "µm")
        factor = _UNIT_UM.get(unit)
        if size is not None and factor is not None:
            value = float(size) * factor
            if np.isfinite(value) and value > 0:
                out.append(value)
    return out


def _resolve_mpp(mpp: float | None, meta_mpp: float | None, path: Path) -> tuple[float, str]:
    """The scale to use and where it came from; refuses a slide without resolution metadata and ``mpp``."""
    if mpp is None:
        if meta_mpp is None:
            raise ValueError(
                f"`path`: {str(path)!r} records no resolution (µm per pixel) in its metadata; pass `mpp=` (e.g. 0.5 "
                "for a 20x scan, 0.25 for 40x). Without it, tile sizes in µm and the features' scale would be guesses."
            )
        return float(meta_mpp), "metadata"
    mpp = _check_mpp(mpp)
    if meta_mpp is not None and abs(mpp - meta_mpp) > MPP_TOLERANCE * meta_mpp:
        logger.warning(
            "%s: `mpp`=%.4g µm per pixel differs from the slide's metadata (%.4g); `mpp` is used.",
            path.name, mpp, meta_mpp,
        )
    return mpp, "argument"


def _chunks(slide: TiffSlide, level: int, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Dask chunks of a level: about :data:`CHUNK_PX` px, whole tiles of the file."""
    props = slide.properties
    out = []
    for ax, n in (("height", shape[1]), ("width", shape[2])):
        tile = props.get(f"tiffslide.level[{level}].tile-{ax}") or 0
        tile = int(tile) if tile and int(tile) > 0 else 256
        out.append(min(n, tile * max(1, round(CHUNK_PX / tile))))
    return (3, out[0], out[1])


def _pyramid(path: str, shapes: list[tuple[int, int, int]], *, planar: bool, slide: TiffSlide) -> Any:
    """The multiscale image element: one lazy dask array per level of the file, Scale transforms to level 0."""
    import dask.array as da
    import xarray as xr
    from dask.base import tokenize
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Identity, set_transformation

    st = os.stat(path)
    token = tokenize(path, st.st_size, st.st_mtime_ns)
    cs = C.COORDINATE_SYSTEM_DEFAULT
    levels = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, shape in enumerate(shapes):
            source = SlideLevel(path, i, shape, planar=planar)
            arr = da.from_array(
                source, chunks=_chunks(slide, i, shape), name=f"wsi-{token}-level{i}", lock=False,
                asarray=False, meta=np.empty((0, 0, 0), dtype=np.uint8),
            )
            parsed = Image2DModel.parse(arr, dims=("c", "y", "x"), c_coords=["r", "g", "b"],
                                        transformations={cs: Identity()})
            levels[f"scale{i}"] = xr.Dataset({"image": _full_res_coords(parsed, shapes[0])})
        tree = xr.DataTree.from_dict(levels)
        # level k gets Scale(level-0 shape / level shape) composed with the coordinate system's transform
        set_transformation(tree, {cs: Identity()}, set_all=True)
        Image2DModel().validate(tree)
    return tree

