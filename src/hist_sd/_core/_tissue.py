"""Where the tissue is: dark pixels of a patch, the tissue mask of a downsampled slide, mask <-> polygons."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["TISSUE_MAX", "mask_to_polygons", "polygons_to_mask", "tissue_fraction", "tissue_mask"]

#: A pixel counts as tissue when every channel is at most this value (optical density >= 0.15 at Io = 240).
TISSUE_MAX = 206


def tissue_fraction(patches: np.ndarray) -> np.ndarray:
    """Fraction of tissue pixels (every channel ``<= TISSUE_MAX``) of ``(..., y, x, 3)`` uint8 patches."""
    return (patches.max(axis=-1) <= TISSUE_MAX).mean(axis=(-2, -1))


def _otsu_split(values: np.ndarray, min_gap: float) -> float | None:
    """Otsu's threshold when it separates two classes whose means differ by at least ``min_gap``."""
    from skimage.filters import threshold_otsu

    if float(np.ptp(values)) < min_gap:
        return None
    t = float(threshold_otsu(values))
    lo, hi = values[values <= t], values[values > t]
    if lo.size == 0 or hi.size == 0 or float(hi.mean() - lo.mean()) < min_gap:
        return None
    return t


def _drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return keep[lab]


def tissue_mask(rgb: np.ndarray, work_mpp: float) -> np.ndarray:
    """Tissue pixels of a downsampled H&E image ``(y, x, 3)`` (0..255) at ``work_mpp`` µm per pixel.

    Tissue is darker or more saturated than the glass: Otsu thresholds on the smoothed (sigma 25 µm)
    saturation and grey level (each used only when it separates two clearly different classes), then a
    closing (50 µm), removal of specks smaller than (200 µm)² and filling of holes smaller than (500 µm)².
    """
    rgb = rgb.astype(np.float32) / 255.0
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0).astype(np.float32)
    gray = rgb.mean(axis=-1)
    sigma = max(25.0 / work_mpp, 0.5)
    sat = ndimage.gaussian_filter(sat, sigma)
    gray = ndimage.gaussian_filter(gray, sigma)
    mask = np.zeros(gray.shape, dtype=bool)
    t_sat = _otsu_split(sat, 0.05)
    if t_sat is not None:
        mask |= sat > t_sat
    t_gray = _otsu_split(gray, 0.05)
    if t_gray is not None:
        mask |= gray < t_gray
    if not mask.any():
        return mask
    radius = max(50.0 / work_mpp, 1.0)
    pad = int(math.ceil(radius)) + 1
    padded = np.pad(mask, pad, mode="edge")
    # closing with a disk through Euclidean distance transforms (fast for any radius)
    dilated = ndimage.distance_transform_edt(~padded) <= radius
    mask = (ndimage.distance_transform_edt(dilated) > radius)[pad:-pad, pad:-pad] | mask
    mask = _drop_small(mask, (200.0 / work_mpp) ** 2)
    holes = _drop_small(~mask, (500.0 / work_mpp) ** 2)
    # background touching the border is never a hole
    lab, _ = ndimage.label(~mask)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    outside = np.isin(lab, border[border > 0])
    return mask | ~(holes | outside)


def mask_to_polygons(mask: np.ndarray, fy: float, fx: float, *, simplify: float = 0.5) -> list[Any]:
    """Polygons (shapely, holes kept) around the tissue of a boolean mask, in full-resolution pixels.

    Mask pixel ``(i, j)`` covers full-resolution rows ``[i * fy, (i + 1) * fy)`` and columns ``[j * fx, (j + 1) * fx)``.
    Each 4-connected component becomes one polygon traced through the pixel-edge midpoints
    (:func:`skimage.measure.find_contours` at level 0.5) and simplified by ``simplify`` mask pixels.
    """
    import shapely
    from shapely.geometry import Polygon
    from skimage.measure import find_contours

    lab, n = ndimage.label(mask)
    polygons = []
    for idx, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        crop = np.pad(lab[sl] == idx, 1)  # closed contours around the component
        rings = []
        for contour in find_contours(crop.astype(np.float32), 0.5):
            rows = contour[:, 0] + sl[0].start - 1
            cols = contour[:, 1] + sl[1].start - 1
            ring = np.column_stack([(cols + 0.5) * fx, (rows + 0.5) * fy])
            if len(ring) >= 4:
                rings.append(ring)
        if not rings:
            continue
        areas = [Polygon(r).area for r in rings]
        outer = int(np.argmax(areas))
        poly = Polygon(rings[outer], [r for k, r in enumerate(rings) if k != outer])
        poly = shapely.make_valid(poly.simplify(simplify * max(fx, fy), preserve_topology=True))
        parts = [poly] if poly.geom_type == "Polygon" else [g for g in getattr(poly, "geoms", []) if g.geom_type == "Polygon"]
        polygons.extend(p for p in parts if not p.is_empty and p.area > 0)
    return polygons


def polygons_to_mask(geometries: Iterable[Any], shape: tuple[int, int], fy: float, fx: float) -> np.ndarray:
    """Rasterise (multi)polygons given in full-resolution pixels into a boolean mask of ``shape``.

    Pixel ``(i, j)`` is set when its centre, full-resolution ``((j + 0.5) fx, (i + 0.5) fy)``, lies inside a
    polygon and outside its holes (an even-odd scanline fill of each polygon's rings: linear in the number of
    pixels and of ring crossings, so large masks of detailed outlines stay fast).
    """
    mask = np.zeros(shape, dtype=bool)
    for geom in geometries:
        if geom is None or geom.is_empty:
            continue
        for part in getattr(geom, "geoms", [geom]):
            if part.geom_type != "Polygon" or part.is_empty:
                continue
            x0, y0, x1, y1 = part.bounds
            r0 = max(int(math.floor(y0 / fy - 0.5)), 0)
            c0 = max(int(math.floor(x0 / fx - 0.5)), 0)
            r1 = min(int(math.ceil(y1 / fy - 0.5)) + 1, shape[0])
            c1 = min(int(math.ceil(x1 / fx - 0.5)) + 1, shape[1])
            if r1 <= r0 or c1 <= c0:
                continue
            rings = [np.asarray(ring.coords, dtype=np.float64) for ring in (part.exterior, *part.interiors)]
            local = [np.column_stack([xy[:, 0] / fx - 0.5 - c0, xy[:, 1] / fy - 0.5 - r0]) for xy in rings]
            mask[r0:r1, c0:c1] |= _even_odd_fill(local, (r1 - r0, c1 - c0))
    return mask


def _even_odd_fill(rings: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Pixels (centres at integer ``(col, row)``) inside closed rings ``(n, 2)`` of ``(col, row)`` by the even-odd rule.

    Each edge crossing the row centre ``i`` (half-open in y, so a vertex is counted once) toggles every pixel of
    that row whose centre lies right of the crossing; a pixel is inside when it was toggled an odd number of times.
    """
    h, w = shape
    rows_all, cols_all = [], []
    for ring in rings:
        if len(ring) < 3:
            continue
        if not np.array_equal(ring[0], ring[-1]):
            ring = np.vstack([ring, ring[:1]])
        xa, ya, xb, yb = ring[:-1, 0], ring[:-1, 1], ring[1:, 0], ring[1:, 1]
        lo = np.ceil(np.minimum(ya, yb)).astype(np.int64)
        n = np.ceil(np.maximum(ya, yb)).astype(np.int64) - lo
        edges = np.flatnonzero(n > 0)
        if len(edges) == 0:
            continue
        counts = n[edges]
        edge = np.repeat(edges, counts)
        start = np.repeat(np.cumsum(counts) - counts, counts)
        rows = lo[edge] + (np.arange(int(counts.sum())) - start)
        x = xa[edge] + (rows - ya[edge]) * (xb[edge] - xa[edge]) / (yb[edge] - ya[edge])
        keep = (rows >= 0) & (rows < h)
        rows_all.append(rows[keep])
        cols_all.append(np.clip(np.ceil(x[keep]), 0, w).astype(np.int64))
    if not rows_all:
        return np.zeros(shape, dtype=bool)
    flat = np.concatenate(rows_all) * (w + 1) + np.concatenate(cols_all)
    toggles = np.bincount(flat, minlength=h * (w + 1)).reshape(h, w + 1)
    return (np.cumsum(toggles, axis=1)[:, :w] % 2).astype(bool)
