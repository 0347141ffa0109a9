"""Streaming patch extraction: square crops around spot centres, padded with white at the border, resized.

Patches are produced batch by batch (never all at once) by worker threads, so that reading, cropping,
resizing and stain normalisation overlap with the encoder's forward pass.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from hist_sd._core._image import region_reader
from hist_sd._core._tissue import tissue_fraction

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("hist_sd")

T = TypeVar("T")
R = TypeVar("R")

#: Pixel value used to pad patches that reach over the image border (white glass).
FILL = 255
#: Patches with a smaller tissue fraction are left as they are by stain normalisation.
MIN_TISSUE_FRACTION = 0.05

STAIN_METHODS = ("macenko", "reinhard")
#: Bytes of image a patch reader keeps decoded at once from a region-decoding file (a lazily read JPEG).
WINDOW_BYTES = 256 * 2**20


def patch_windows(xy: np.ndarray, patch_px: int) -> np.ndarray:
    """``(n, 2)`` ``(x, y)`` centres -> ``(n, 2)`` integer ``(x0, y0)`` top-left corners of ``patch_px`` windows."""
    return np.floor(np.asarray(xy, dtype=np.float64)[:, :2] - patch_px / 2.0 + 0.5).astype(np.int64)


def raster_order(xy: np.ndarray, patch_px: int) -> np.ndarray:
    """Order spots row by row (bands of one patch height, then x), so a batch touches a compact image region."""
    xy = np.asarray(xy, dtype=np.float64)
    band = np.floor(xy[:, 1] / max(patch_px, 1))
    return np.lexsort((xy[:, 0], band))


class PatchReader:
    """Crop ``patch_px``-wide squares of a ``(c, y, x)`` image (numpy, dask or xarray) and resize them.

    Parameters
    ----------
    image
        ``(3, height, width)`` uint8 image; xarray/dask images are read one batch bounding box at a time.
    xy
        ``(n, 2)`` patch centres ``(x, y)`` in image pixels.
    patch_px
        Side of the square crop in image pixels, or several sides: concentric crops of every spot, all cut from
        one read of the largest (:meth:`read_sizes`; :meth:`read` returns the first).
    out_size
        Side of the returned patches (resized with bilinear/area-aware PIL resampling when it differs).
    """

    def __init__(
        self,
        image: Any,
        xy: np.ndarray,
        patch_px: int | Sequence[int],
        out_size: int,
        *,
        window_bytes: int = WINDOW_BYTES,
    ) -> None:
        data = image.data if hasattr(image, "dims") else image  # xarray -> numpy/dask
        if data.ndim != 3 or data.shape[0] != 3:
            raise ValueError(f"The image must be (3, height, width) RGB; got shape {tuple(data.shape)}.")
        self.data = data
        self.height, self.width = int(data.shape[1]), int(data.shape[2])
        self.sizes = tuple(int(p) for p in np.atleast_1d(np.asarray(patch_px)))
        if not self.sizes:
            raise ValueError("`patch_px` must hold at least one patch side.")
        self.patch_px = max(self.sizes)  # the crop that is read; the others are cut from it
        self.out_size = int(out_size)
        self.corners = patch_windows(xy, self.patch_px)
        # top-left corner of each size's window inside the largest one, (n, n_sizes, 2): the very pixels a reader
        # of that size alone would crop (corners are rounded per size, so the offsets are not always (P - p) / 2)
        self.offsets = np.stack([patch_windows(xy, p) - self.corners for p in self.sizes], axis=1)
        self._region = region_reader(data)  # a file that decodes regions directly (a lazily read JPEG)
        self._window_bytes = int(window_bytes)
        self._window: tuple[int, int, int, int, np.ndarray] | None = None
        self._lock = threading.Lock()
        self.pixels_read = 0  # pixels decoded or copied from the image, and in how many reads (tests count them)
        self.reads = 0

    def _pixels(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` as ``(y, x, 3)`` uint8.

        From a region-decoding file, a window of full-width bands is decoded once (all patches' x extent, rows
        from ``y0`` down to about ``window_bytes``) and batches read in raster order are cut from it, so the
        sequential JPEG decoder passes over each row about once.
        """
        if self._region is None:
            self.pixels_read += (y1 - y0) * (x1 - x0)
            self.reads += 1
            return np.moveaxis(np.asarray(self.data[:, y0:y1, x0:x1]), 0, -1)
        with self._lock:
            w = self._window
            if w is None or not (w[0] <= y0 and y1 <= w[1] and w[2] <= x0 and x1 <= w[3]):
                wx0 = max(min(int(self.corners[:, 0].min()), x0), 0)
                wx1 = min(max(int(self.corners[:, 0].max()) + self.patch_px, x1), self.width)
                last = min(max(int(self.corners[:, 1].max()) + self.patch_px, y1), self.height)
                # start a little above: batches in raster order reach up to about a patch above the last one
                wy0 = max(0, min(y0, max(y0 - 2 * self.patch_px, int(self.corners[:, 1].min()))))
                rows = max(y1 - wy0, self._window_bytes // (3 * max(wx1 - wx0, 1)))
                wy1 = min(last, wy0 + rows)
                self._window = w = (wy0, wy1, wx0, wx1, self._region(wy0, wy1, wx0, wx1))
                self.pixels_read += (wy1 - wy0) * (wx1 - wx0)
                self.reads += 1
            return w[4][y0 - w[0] : y1 - w[0], x0 - w[2] : x1 - w[2]]

    def read(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """Patches of the spots ``idx`` (of the first size) as ``(len(idx), out_size, out_size, 3)`` uint8."""
        return self.read_sizes(idx, [0])[:, 0]

    def read_sizes(self, idx: Sequence[int] | np.ndarray, which: Sequence[int] | None = None) -> np.ndarray:
        """Concentric patches of the spots ``idx`` as ``(len(idx), len(which), out_size, out_size, 3)`` uint8.

        ``which`` picks sizes by position in ``sizes`` (default: all). Each spot's largest window is read once
        (padded with white over the image border) and the smaller ones are cut from it, then all are resized.
        """
        idx = np.asarray(idx, dtype=np.int64)
        which = list(range(len(self.sizes))) if which is None else [int(j) for j in which]
        p, s = self.patch_px, self.out_size
        out = np.empty((len(idx), len(which), s, s, 3), dtype=np.uint8)
        if len(idx) == 0:
            return out
        c = self.corners[idx]
        off = self.offsets[idx]
        patch = np.empty((p, p, 3), dtype=np.uint8)
        for group in self._groups(c):
            x0 = max(int(c[group, 0].min()), 0)
            y0 = max(int(c[group, 1].min()), 0)
            x1 = min(int(c[group, 0].max()) + p, self.width)
            y1 = min(int(c[group, 1].max()) + p, self.height)
            region = self._pixels(y0, y1, x0, x1)  # (y, x, 3)
            if region.dtype != np.uint8:
                region = np.clip(region, 0, 255).astype(np.uint8)
            for k in group:
                cx, cy = int(c[k, 0]), int(c[k, 1])
                ax0, ay0 = max(cx, 0), max(cy, 0)
                ax1, ay1 = min(cx + p, self.width), min(cy + p, self.height)
                if ax0 == cx and ay0 == cy and ax1 == cx + p and ay1 == cy + p:
                    crop = region[cy - y0 : cy - y0 + p, cx - x0 : cx - x0 + p]
                else:  # over the border: pad with white
                    patch.fill(FILL)
                    if ax1 > ax0 and ay1 > ay0:
                        patch[ay0 - cy : ay1 - cy, ax0 - cx : ax1 - cx] = region[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
                    crop = patch
                for j, size in enumerate(which):
                    ox, oy, q = int(off[k, size, 0]), int(off[k, size, 1]), self.sizes[size]
                    out[k, j] = resize(crop[oy : oy + q, ox : ox + q], s)
        return out

    def _groups(self, c: np.ndarray) -> list[list[int]]:
        """Which patches of a batch are read together (indices into ``c``).

        All at once from memory or a region-decoding file; from a lazy store (a whole slide's tiles, a zarr
        image), runs of neighbouring patches whose bounding box holds at most 1.5x their pixels, so gaps between
        tiles and the rows of a batch's other bands are never read.
        """
        if isinstance(self.data, np.ndarray) or self._region is not None:
            return [list(range(len(c)))]
        p = self.patch_px
        groups: list[list[int]] = [[0]]
        lo, hi = c[0].copy(), c[0] + p
        for k in range(1, len(c)):
            nlo, nhi = np.minimum(lo, c[k]), np.maximum(hi, c[k] + p)
            if float(np.prod(nhi - nlo)) <= 1.5 * (len(groups[-1]) + 1) * p * p:
                groups[-1].append(k)
                lo, hi = nlo, nhi
            else:
                groups.append([k])
                lo, hi = c[k].copy(), c[k] + p
        return groups


#: The 8 dihedral transforms of a ``(n, y, x, c)`` stack of square patches, in the order test-time views use them:
#: identity, horizontal flip, vertical flip, 180° rotation, then the transposes (``y <-> x``) of those four.
DIHEDRAL: tuple[Callable[[np.ndarray], np.ndarray], ...] = (
    lambda p: p,
    lambda p: p[:, :, ::-1],
    lambda p: p[:, ::-1, :],
    lambda p: p[:, ::-1, ::-1],
    lambda p: p.swapaxes(1, 2),
    lambda p: p[:, :, ::-1].swapaxes(1, 2),
    lambda p: p[:, ::-1, :].swapaxes(1, 2),
    lambda p: p[:, ::-1, ::-1].swapaxes(1, 2),
)
#: Numbers of test-time views :func:`dihedral_views` accepts (the first ``k`` of :data:`DIHEDRAL`).
VIEWS = (1, 2, 4, 8)


def dihedral_views(patches: np.ndarray, views: int) -> np.ndarray:
    """``(n, s, s, 3)`` patches -> ``(n * views, s, s, 3)``: each patch under the first ``views`` of :data:`DIHEDRAL`.

    Rows are patch-major (the ``views`` views of patch 0, then of patch 1, ...), contiguous; ``views=1`` returns
    ``patches`` itself.
    """
    if views not in VIEWS:
        raise ValueError(f"`views` must be one of {list(VIEWS)}, got {views!r}.")
    if views == 1:
        return patches
    n = len(patches)
    out = np.empty((n, views, *patches.shape[1:]), dtype=patches.dtype)
    for v in range(views):
        out[:, v] = DIHEDRAL[v](patches)
    return out.reshape(n * views, *patches.shape[1:])


def resize(patch: np.ndarray, size: int) -> np.ndarray:
    """Resize a ``(p, p, 3)`` uint8 patch to ``(size, size, 3)`` (PIL bilinear; antialiased when shrinking)."""
    if patch.shape[0] == size and patch.shape[1] == size:
        return patch
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(patch)).resize((size, size), Image.Resampling.BILINEAR))


class StainNormalizer:
    """Macenko or Reinhard stain normalisation (torchstain) fitted on one reference image.

    torchstain's NumPy backend is used: it runs in float64 on the CPU and is bitwise reproducible (its torch
    backend is not, across thread schedules), so the same call gives the same patches.

    Parameters
    ----------
    method
        ``"macenko"`` or ``"reinhard"``.
    reference
        ``(y, x, 3)`` or ``(3, y, x)`` uint8 RGB reference with tissue.
    """

    def __init__(self, method: str, reference: np.ndarray) -> None:
        if method not in STAIN_METHODS:
            raise ValueError(f"`stain_norm` must be None or one of {list(STAIN_METHODS)}, got {method!r}.")
        from torchstain.numpy.normalizers import NumpyMacenkoNormalizer, NumpyReinhardNormalizer

        ref = _as_hwc_uint8(reference)
        frac = float(tissue_fraction(ref))
        if frac < MIN_TISSUE_FRACTION:
            raise ValueError(
                f"The stain reference has too little tissue ({frac:.1%} of pixels); pass `stain_reference=` an "
                "H&E image region with tissue."
            )
        self.method = method
        self._norm = NumpyMacenkoNormalizer() if method == "macenko" else NumpyReinhardNormalizer()
        try:
            with np.errstate(all="ignore"):
                self._norm.fit(np.ascontiguousarray(ref))
        except _STAIN_ERRORS as err:
            raise ValueError(f"Fitting the {method} stain normaliser on the reference failed: {err}") from err
        self.skipped = 0

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        """Normalise ``(n, y, x, 3)`` uint8 patches (patches with little tissue are returned unchanged)."""
        out = patches.copy()
        frac = tissue_fraction(patches)
        for k in range(len(patches)):
            if frac[k] < MIN_TISSUE_FRACTION:
                self.skipped += 1
                continue
            try:
                with np.errstate(all="ignore"):
                    if self.method == "macenko":
                        res = self._norm.normalize(np.ascontiguousarray(patches[k]), stains=False)[0]
                    else:
                        res = self._norm.normalize(np.ascontiguousarray(patches[k]))
            except _STAIN_ERRORS:  # degenerate stain vectors: keep the patch
                self.skipped += 1
                continue
            out[k] = res
        return out


_STAIN_ERRORS = (np.linalg.LinAlgError, ValueError, IndexError, FloatingPointError, ZeroDivisionError)


def _as_hwc_uint8(image: Any) -> np.ndarray:
    arr = np.asarray(getattr(image, "values", image))
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"`stain_reference` must be an RGB image (y, x, 3) or (3, y, x); got shape {arr.shape}.")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr


def pick_reference(reader: PatchReader, *, max_candidates: int = 256) -> tuple[int, np.ndarray]:
    """The patch with the largest tissue fraction among up to ``max_candidates`` evenly spread spots.

    Returns its row index and the patch (at the reader's ``out_size``).
    """
    n = len(reader.corners)
    cand = np.unique(np.linspace(0, n - 1, num=min(n, max_candidates)).round().astype(np.int64))
    best, best_frac, best_patch = -1, -1.0, None
    for start in range(0, len(cand), 32):
        idx = cand[start : start + 32]
        patches = reader.read(idx)
        frac = tissue_fraction(patches)
        k = int(np.argmax(frac))
        if frac[k] > best_frac:
            best, best_frac, best_patch = int(idx[k]), float(frac[k]), patches[k]
    assert best_patch is not None
    return best, best_patch


def to_model_input(
    patches: np.ndarray, mean: Sequence[float], std: Sequence[float], *, pin: bool = False
) -> torch.Tensor:
    """``(n, s, s, 3)`` uint8 -> ``(n, 3, s, s)`` float32 (channels-last memory), ``(x / 255 - mean) / std``."""
    import torch

    x = torch.from_numpy(patches).permute(0, 3, 1, 2).float()  # a channels-last view: no copy of the layout
    m = torch.tensor([255.0 * v for v in mean], dtype=torch.float32).reshape(1, 3, 1, 1)
    s = torch.tensor([1.0 / (255.0 * v) for v in std], dtype=torch.float32).reshape(1, 3, 1, 1)
    x = x.sub_(m).mul_(s)
    return x.pin_memory() if pin else x


def prefetch(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int = 1,
    depth: int = 2,
    initializer: Callable[[], object] | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` computed ahead by ``workers`` threads, in order, with at most ``depth`` results pending.

    Memory stays bounded (unlike ``Executor.map``, which submits everything at once); errors surface in the
    caller at the item that raised. ``items`` is consumed in the calling thread, so it may itself be a
    ``prefetch`` stream (a pipeline).
    """
    workers = max(int(workers), 1)
    depth = max(int(depth), workers)
    it = iter(items)
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hist_sd", initializer=initializer) as ex:
        try:
            for item in it:
                pending.append(ex.submit(fn, item))
                if len(pending) >= depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
