"""Spot values drawn at true size over the H&E image: measured, predicted, or any ``obs`` column."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._core._data import resolve
from hist_sd._core._expr import measured_matrix, spots_to_score
from hist_sd._core._image import image_levels, resolve_image_key
from hist_sd._core._stats import correlate
from hist_sd._docs import doc_params
from hist_sd.get._accessors import prediction_matrix
from hist_sd.pl._utils import PathLike, as_list, finish, pick_level, read_crop

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

__all__ = ["predicted_vs_measured", "spatial"]

Limit = float | str | None

#: Default colour map of continuous values: its light end reads on pink/purple H&E, its dark end is blue, not
#: purple (magma's and viridis' dark ends vanish into haematoxylin).
CMAP = "YlGnBu"
#: Diverging colour map of z-scored panels.
CMAP_DIVERGING = "RdBu_r"
_COLOR_SCALES = ("shared", "zscore", "separate")


@dataclass
class _Panel:
    values: np.ndarray  # (n,) float, or (n,) object for categories
    title: str
    label: str  # colour bar label
    categorical: bool = False
    colors: dict[Any, Any] | None = None
    limits: tuple[float | None, float | None] | None = None  # default colour limits, e.g. (0, 1) for probabilities


@dataclass
class _Scene:
    xy: np.ndarray
    radius: float
    box: tuple[float, float, float, float]  # x0, x1, y0, y1 in full-res pixels
    crop: np.ndarray | None = None
    extent: tuple[float, float, float, float] | None = None
    square: bool = False  # tiles: squares of side 2 * radius
    mpp: float | None = None  # µm per pixel, for the scale bar


# --------------------------------------------------------------------------------------------------------------
# Geometry and background
# --------------------------------------------------------------------------------------------------------------
def _spot_radius(adata: AnnData, xy: np.ndarray) -> float:
    meta = adata.uns.get(C.UNS_KEY)
    if isinstance(meta, dict):
        try:
            d, mpp = float(meta[C.SPOT_DIAMETER_UM]), float(meta[C.MPP])
        except (KeyError, TypeError, ValueError):
            d = mpp = float("nan")
        if np.isfinite(d) and np.isfinite(mpp) and d > 0 and mpp > 0:
            return d / mpp / 2.0
    # No scale: a third of the nearest-neighbour distance keeps spots apart.
    if len(xy) < 2:
        return 1.0
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(xy).query(xy, k=2)
    nn = float(np.median(dist[:, 1]))
    logger.info("No spot size in `uns[%r]`: spots drawn with a radius of %.1f px.", C.UNS_KEY, nn / 3)
    return nn / 3.0 if nn > 0 else 1.0


def _scene(
    sdata: SpatialData | None,
    adata: AnnData,
    *,
    image: bool,
    image_key: str | None,
    scale: int | str | None,
    size: float,
    target_px: float,
) -> _Scene:
    if C.SPATIAL not in adata.obsm:
        raise KeyError(f"The table has no `obsm[{C.SPATIAL!r}]` with spot coordinates (pixels).")
    xy = np.asarray(adata.obsm[C.SPATIAL], dtype=float)[:, :2]
    if not np.isfinite(size) or size <= 0:
        raise ValueError(f"`size` must be a positive factor on the true spot size, got {size!r}.")
    radius = _spot_radius(adata, xy) * size
    lo, hi = np.nanmin(xy, axis=0), np.nanmax(xy, axis=0)
    margin = max(2.0 * radius, 0.04 * float(np.max(hi - lo)))
    box = (lo[0] - margin, hi[0] + margin, lo[1] - margin, hi[1] + margin)
    meta = adata.uns.get(C.UNS_KEY)
    meta = meta if isinstance(meta, dict) else {}
    try:
        mpp = float(meta[C.MPP])
    except (KeyError, TypeError, ValueError):
        mpp = float("nan")
    scene = _Scene(
        xy=xy,
        radius=radius,
        box=box,
        square=meta.get(C.TECHNOLOGY) == "tiles",
        mpp=mpp if np.isfinite(mpp) and mpp > 0 else None,
    )
    if not image or sdata is None:
        return scene
    if image_key is None:
        image_key = adata.uns.get(C.UNS_KEY, {}).get(C.IMAGE_KEY) or None
        if image_key is None and len(sdata.images) == 1:
            image_key = next(iter(sdata.images))
        if image_key is None:
            logger.info("No image to draw under the spots (pass `image_key=`).")
            return scene
    levels = image_levels(sdata.images[resolve_image_key(sdata, image_key)])
    full = levels[0][1]
    full_shape = (int(full.sizes["y"]), int(full.sizes["x"]))
    x0, x1, y0, y1 = box
    box = (max(x0, -0.5), min(x1, full_shape[1] - 0.5), max(y0, -0.5), min(y1, full_shape[0] - 0.5))
    crop_px = max(box[1] - box[0], box[3] - box[2])
    level = pick_level(levels, crop_px, target_px=target_px, scale=scale)
    crop, extent = read_crop(levels, level, box)
    logger.debug("image %s level %s: crop %s", image_key, levels[level][0], crop.shape)
    scene.crop, scene.extent = crop, extent
    return scene


# --------------------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------------------
def _palette(adata: AnnData, col: str, cats: Sequence[Any], palette: Any) -> dict[Any, Any]:
    from matplotlib import colormaps
    from matplotlib.colors import to_rgba

    stored = adata.uns.get(f"{col}_colors")
    if palette is None and stored is not None and len(stored) == len(cats):
        colors = list(stored)
    elif isinstance(palette, dict):
        missing = [c for c in cats if c not in palette]
        if missing:
            raise KeyError(f"`palette` has no colour for the categories {missing} of `obs[{col!r}]`.")
        return {c: to_rgba(palette[c]) for c in cats}
    elif isinstance(palette, str) or palette is None:
        name = palette or ("tab10" if len(cats) <= 10 else "tab20" if len(cats) <= 20 else "nipy_spectral")
        cmap = colormaps[name]
        n = getattr(cmap, "N", 256)
        colors = [cmap(i % n) if n <= 20 else cmap(i / max(len(cats) - 1, 1)) for i in range(len(cats))]
    else:
        colors = list(palette)
        if len(colors) < len(cats):
            raise ValueError(
                f"`palette` has {len(colors)} colours for {len(cats)} categories of `obs[{col!r}]`."
            )
    return {c: to_rgba(colors[i]) for i, c in enumerate(cats)}


def _obs_panel(adata: AnnData, col: str, palette: Any) -> _Panel:
    if col not in adata.obs.columns:
        raise KeyError(f"`obs`={col!r} is not a column of `obs` (it has {list(adata.obs.columns)}).")
    s = adata.obs[col]
    if (
        isinstance(s.dtype, pd.CategoricalDtype)
        or s.dtype == bool
        or s.dtype == object
        or pd.api.types.is_string_dtype(s)
    ):
        cat = s if isinstance(s.dtype, pd.CategoricalDtype) else s.astype("category")
        cats = list(cat.cat.categories)
        return _Panel(
            values=cat.to_numpy(dtype=object),
            title=col,
            label=col,
            categorical=True,
            colors=_palette(adata, col, cats, palette),
        )
    values = pd.to_numeric(s, errors="coerce").to_numpy(float)
    finite = values[np.isfinite(values)]
    # a probability or fraction: the colour scale runs 0-1, whatever the values of this slide span
    unit = bool(finite.size) and float(finite.min()) >= 0.0 and float(finite.max()) <= 1.0
    return _Panel(values=values, title=col, label=col, limits=(0.0, 1.0) if unit else None)


def _gene_panels(
    adata: AnnData,
    genes: list[str],
    *,
    key: str | None,
    layer: str | None,
    normalize: bool | None,
) -> list[_Panel]:
    if not genes:
        return []
    if key is not None:
        values, pred_genes = prediction_matrix(adata, key)
        col = {g: i for i, g in enumerate(pred_genes)}
        unknown = [g for g in genes if g not in col]
        if unknown:
            raise KeyError(
                f"`genes`: {unknown} not predicted in `obsm[{key!r}]` (it has {len(pred_genes)} genes)."
            )
        label = "predicted expression"
        return [_Panel(values=values[:, col[g]], title=f"{g} (predicted)", label=label) for g in genes]
    meas, label = measured_matrix(adata, genes, layer=layer, normalize=normalize)
    meta = adata.uns.get(C.UNS_KEY)
    if isinstance(meta, dict) and meta.get("prediction") and layer is None:
        label = "predicted expression"  # a predicted table (``hs.tl.predict(..., table_added=)``): X holds predictions
    elif label == "X":
        label = "expression"
    return [_Panel(values=meas[:, i], title=g, label=label) for i, g in enumerate(genes)]


def _limit(lim: Limit, values: np.ndarray, what: str) -> float | None:
    if lim is None:
        return None
    if isinstance(lim, str):
        if not (lim.startswith("p") and lim[1:].replace(".", "", 1).isdigit() and 0 <= float(lim[1:]) <= 100):
            raise ValueError(f"`{what}` must be a number or a percentile string like 'p99', got {lim!r}.")
        finite = values[np.isfinite(values)]
        return float(np.percentile(finite, float(lim[1:]))) if finite.size else None
    return float(lim)


# --------------------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------------------
def _spots(ax: Axes, scene: _Scene) -> Any:
    """The spot collection: circles of the true spot size, or squares for tiles."""
    from matplotlib.collections import EllipseCollection, PolyCollection

    n = len(scene.xy)
    if scene.square:
        r = scene.radius
        corners = np.array([[-r, -r], [r, -r], [r, r], [-r, r]])
        return PolyCollection(scene.xy[:, None, :] + corners[None], zorder=2, linewidths=0)
    d = np.full(n, 2.0 * scene.radius)
    return EllipseCollection(
        d, d, np.zeros(n), units="xy", offsets=scene.xy, offset_transform=ax.transData, zorder=2, linewidths=0
    )


def _nice_length(um: float) -> float:
    """The largest 1-2-5 length (µm) not above ``um``."""
    exp = 10.0 ** np.floor(np.log10(um))
    return float(max(m * exp for m in (1.0, 2.0, 5.0) if m * exp <= um))


def _scalebar(ax: Axes, scene: _Scene) -> None:
    """A bar of a round length in µm (about a fifth of the panel's width) in the lower right corner."""
    if scene.mpp is None:
        return
    from matplotlib.font_manager import FontProperties
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    width_um = (scene.box[1] - scene.box[0]) * scene.mpp
    um = _nice_length(width_um / 5.0)
    label = f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} µm"
    bar = AnchoredSizeBar(
        ax.transData,
        um / scene.mpp,
        label,
        loc="lower right",
        pad=0.3,
        borderpad=0.3,
        sep=3,
        frameon=True,
        size_vertical=(scene.box[3] - scene.box[2]) / 150.0,
        color="black",
        fontproperties=FontProperties(size="x-small"),
    )
    bar.patch.set(alpha=0.75, facecolor="white", edgecolor="none")
    ax.add_artist(bar)


def _draw(
    ax: Axes,
    scene: _Scene,
    panel: _Panel,
    *,
    cmap: str | Colormap,
    vmin: Limit,
    vmax: Limit,
    alpha: float,
    img_alpha: float,
    na_color: str,
    colorbar: bool,
    title: str | None,
    scalebar: bool = True,
) -> None:
    from matplotlib import colormaps
    from matplotlib.colors import Normalize, to_rgba
    from matplotlib.patches import Patch

    if scene.crop is not None:
        ax.imshow(
            scene.crop,
            extent=scene.extent,
            origin="upper",
            alpha=img_alpha,
            interpolation="antialiased",
            zorder=0,
        )
    coll = _spots(ax, scene)
    if panel.categorical:
        assert panel.colors is not None
        na = to_rgba(na_color)
        coll.set_facecolor([panel.colors.get(v, na) if not pd.isna(v) else na for v in panel.values])
        coll.set_alpha(alpha)
        ax.add_collection(coll)
        present = [c for c in panel.colors if (panel.values == c).any()]
        handles = [Patch(facecolor=panel.colors[c], label=str(c)) for c in present]
        if handles:
            ax.legend(
                handles=handles,
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                frameon=False,
                fontsize="small",
                title=panel.label,
                title_fontsize="small",
            )
    else:
        cm = colormaps[cmap] if isinstance(cmap, str) else cmap
        cm = cm.with_extremes(bad=na_color)
        vals = np.asarray(panel.values, dtype=float)
        lo, hi = _limit(vmin, vals, "vmin"), _limit(vmax, vals, "vmax")
        if panel.limits is not None:
            lo = panel.limits[0] if vmin is None else lo
            hi = panel.limits[1] if vmax is None else hi
        coll.set_cmap(cm)
        coll.set_norm(Normalize(vmin=lo, vmax=hi))
        coll.set_array(np.ma.masked_invalid(vals))
        coll.set_alpha(alpha)
        ax.add_collection(coll)
        if colorbar:
            cb = ax.figure.colorbar(coll, ax=ax, fraction=0.046, pad=0.02)
            cb.set_label(panel.label, fontsize="small")
            cb.ax.tick_params(labelsize="small")
            cb.outline.set_visible(False)
    x0, x1, y0, y1 = scene.box
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)  # image coordinates: y grows downwards
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(panel.title if title is None else title, fontsize="medium")
    if scalebar:
        _scalebar(ax, scene)


def _make_axes(
    n: int, *, ncols: int, nrows: int | None, ax: Axes | Sequence[Axes] | None, panel_size: float, dpi: float
) -> tuple[Figure, list[Axes], bool]:
    import matplotlib.pyplot as plt

    if ax is not None:
        axes = [ax] if not isinstance(ax, Sequence | np.ndarray) else list(np.ravel(ax))
        if len(axes) != n:
            raise ValueError(
                f"`ax` gives {len(axes)} axes for {n} panels; pass one Axes per panel or `ax=None`."
            )
        return axes[0].figure, axes, False
    if not isinstance(ncols, int | np.integer) or ncols < 1:
        raise ValueError(f"`ncols` must be a positive integer, got {ncols!r}.")
    ncols = min(int(ncols), n)
    nrows = nrows or int(np.ceil(n / ncols))
    fig, grid = plt.subplots(
        nrows,
        ncols,
        figsize=(ncols * panel_size * 1.3, nrows * panel_size),
        dpi=dpi,
        squeeze=False,
        layout="constrained",
    )
    flat = list(grid.ravel())
    for extra in flat[n:]:
        extra.set_visible(False)
    return fig, flat[:n], True


def _titles(title: str | Sequence[str] | None, n: int) -> tuple[list[str | None], str | None]:
    """Panel titles and a figure title (a single string over several panels titles the figure)."""
    if title is None:
        return [None] * n, None
    if isinstance(title, str):
        return ([title], None) if n == 1 else ([None] * n, title)
    titles = list(title)
    if len(titles) != n:
        raise ValueError(f"`title` has {len(titles)} entries for {n} panels.")
    return titles, None


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------
@doc_params
def spatial(
    data: AnnData | SpatialData,
    genes: str | Sequence[str] | None = None,
    *,
    key: str | None = None,
    layer: str | None = None,
    obs: str | Sequence[str] | None = None,
    image: bool = True,
    ncols: int = 4,
    size: float = 1.0,
    cmap: str | Colormap = CMAP,
    vmin: Limit = None,
    vmax: Limit = None,
    title: str | Sequence[str] | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: PathLike | None = None,
    table_key: str | None = None,
    image_key: str | None = None,
    scale: int | str | None = None,
    normalize: bool | None = None,
    palette: str | Sequence[Any] | dict[Any, Any] | None = None,
    alpha: float = 1.0,
    img_alpha: float = 1.0,
    na_color: str = "lightgrey",
    colorbar: bool = True,
    scalebar: bool = True,
    panel_size: float = 4.0,
    dpi: float = 100.0,
    overwrite: bool = False,
) -> Figure | list[Axes] | None:
    """Plot spot values over the H&E image, one panel per gene or ``obs`` column.

    Spots are drawn as circles of their true size (``uns["hist_sd"]["spot_diameter_um"]`` over the µm per
    pixel) at ``obsm["spatial"]``, tiles of :func:`hist_sd.pp.tile` as squares; a scale bar gives µm. Values in
    0-1 (probabilities, fractions) get a 0-1 colour scale. The image comes from the coarsest pyramid level that still resolves the
    panel, cropped to the spots; the full-resolution image is read only when it is the only level.

    Parameters
    ----------
    data
        A table, or a SpatialData holding it and its image. A bare AnnData is drawn without an image.
    genes
        Gene(s) to draw.
    key
        Draw predictions from ``obsm[key]`` (e.g. ``"hist_pred"``; columns named by ``uns[key]["genes"]`` or a
        DataFrame's columns). Without it, measured expression is drawn.
    layer
        Measured values from ``layers[layer]`` (as stored) instead of ``.X``.
    obs
        ``obs`` column(s) to draw after the genes (e.g. ``"tumor_score"``); categorical, string and boolean
        columns get a discrete palette and a legend.
    image
        Draw the H&E image under the spots (when the data has one).
    ncols
        Panels per row.
    size
        Factor on the true spot diameter.
    cmap
        Colour map of continuous values; the default, ``"YlGnBu"``, reads on H&E (its dark end is blue, not the
        purple of haematoxylin).
    vmin, vmax
        Colour limits: numbers, or percentiles of each panel's values such as ``"p1"``, ``"p99"``. By default
        each panel spans its values, or 0-1 for an ``obs`` column whose values all lie in 0-1.
    title
        Panel title(s); by default the gene or column name.
    ax
        Draw into these Axes (one per panel) instead of a new figure.
    show
        Call ``plt.show()`` (and return None).
    save
        Write the figure to this path (PNG unless the suffix says otherwise), atomically.
    %(table_key)s
    image_key
        Image element; by default the one named in ``uns["hist_sd"]``.
    scale
        Image pyramid level to draw (index or name such as ``"scale2"``); by default chosen from the panel size.
    normalize
        For measured ``.X``: ``None`` log-normalises raw counts (``log1p`` of counts per 10,000, the scale of
        :func:`hist_sd.tl.evaluate` and of the models) and leaves anything else as it is; ``True`` always,
        ``False`` never.
    palette
        Colours of categorical ``obs`` columns: a colour map name, a list, or a dict category -> colour. By
        default ``uns[f"{col}_colors"]`` when it fits, else ``tab10``/``tab20``.
    alpha
        Opacity of the spots.
    img_alpha
        Opacity of the image.
    na_color
        Colour of spots without a value.
    colorbar
        Draw a colour bar next to each continuous panel.
    scalebar
        Draw a scale bar in µm (needs ``uns["hist_sd"]["mpp"]``).
    panel_size
        Height of one panel in inches.
    dpi
        Resolution of a new figure and of the saved file.
    overwrite
        Replace an existing file at ``save``.

    Returns
    -------
    The Figure (or, with ``ax``, the list of Axes drawn into); None with ``show=True``.
    """
    sdata, adata = resolve(data, table_key)
    gene_list = as_list(genes, "genes")
    obs_list = as_list(obs, "obs")
    if not gene_list and not obs_list:
        raise ValueError("Nothing to draw: pass `genes=` and/or `obs=`.")
    if key is not None and layer is not None:
        raise ValueError("Pass either `key` (predictions) or `layer` (measured values), not both.")
    panels = _gene_panels(adata, gene_list, key=key, layer=layer, normalize=normalize)
    panels += [_obs_panel(adata, col, palette) for col in obs_list]
    titles, suptitle = _titles(title, len(panels))
    fig, axes, own = _make_axes(len(panels), ncols=ncols, nrows=None, ax=ax, panel_size=panel_size, dpi=dpi)
    if suptitle is not None:
        fig.suptitle(suptitle)
    scene = _scene(
        sdata, adata, image=image, image_key=image_key, scale=scale, size=size, target_px=panel_size * dpi
    )
    for a, panel, t in zip(axes, panels, titles, strict=True):
        _draw(
            a,
            scene,
            panel,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            alpha=alpha,
            img_alpha=img_alpha,
            na_color=na_color,
            colorbar=colorbar,
            title=t,
            scalebar=scalebar,
        )
    return finish(fig, axes, own_figure=own, show=show, save=save, overwrite=overwrite, dpi=dpi)


@doc_params
def predicted_vs_measured(
    data: AnnData | SpatialData,
    genes: str | Sequence[str],
    *,
    pred_key: str = C.PRED,
    layer: str | None = None,
    color_scale: str = "shared",
    image: bool = True,
    size: float = 1.0,
    cmap: str | Colormap | None = None,
    vmin: Limit = None,
    vmax: Limit = "p99",
    in_tissue_only: bool = True,
    title: str | None = None,
    scalebar: bool = True,
    show: bool | None = None,
    save: PathLike | None = None,
    table_key: str | None = None,
    image_key: str | None = None,
    scale: int | str | None = None,
    alpha: float = 1.0,
    panel_size: float = 3.5,
    dpi: float = 100.0,
    overwrite: bool = False,
) -> Figure | None:
    """Measured (top row) against predicted (bottom row) expression, with each gene's Pearson r in the title.

    Measured values are on the scale :func:`hist_sd.tl.evaluate` compares (raw counts in ``.X`` are
    log-normalised; a ``layer`` is used as it is), and r is the same per-gene Pearson correlation, over the
    in-tissue spots. By default a gene's measured and predicted maps share one colour scale, so a prediction
    that is compressed towards the mean (as regression predictions usually are) looks compressed.

    Parameters
    ----------
    data
        A table, or a SpatialData holding it and its image.
    genes
        Gene(s), one column each.
    pred_key
        Predictions in ``obsm[pred_key]``.
    layer
        Measured values from ``layers[layer]`` instead of ``.X``.
    color_scale
        ``"shared"``: one colour scale per gene for both maps (``vmin``/``vmax`` of the pooled values);
        ``"zscore"``: each map standardised over the scored spots (mean 0, SD 1) on one diverging scale, which
        compares patterns, not levels; ``"separate"``: each map spans its own values (the colour bars differ,
        which hides compression).
    image
        Draw the H&E image under the spots.
    size
        Factor on the true spot diameter.
    cmap
        Colour map; by default ``"YlGnBu"`` (``"RdBu_r"`` for z-scores).
    vmin, vmax
        Colour limits (numbers or percentiles like ``"p99"``); with ``"zscore"`` symmetric limits of ±``vmax``
        (a number) or ±3.
    in_tissue_only
        Compute r (and z-scores) over spots with a truthy ``obs["in_tissue"]`` only.
    title
        Figure title, e.g. how the genes were selected; by default it states the colour scale and the spots
        r was computed over.
    scalebar
        Draw a scale bar in µm.
    show
        Call ``plt.show()`` (and return None).
    save
        Write the figure to this path, atomically.
    %(table_key)s
    image_key
        Image element; by default the one named in ``uns["hist_sd"]``.
    scale
        Image pyramid level to draw.
    alpha
        Opacity of the spots.
    panel_size
        Height of one panel in inches.
    dpi
        Resolution of the figure and of the saved file.
    overwrite
        Replace an existing file at ``save``.

    Returns
    -------
    The Figure; None with ``show=True``.
    """
    import matplotlib.pyplot as plt

    if color_scale not in _COLOR_SCALES:
        raise ValueError(f"`color_scale` must be one of {list(_COLOR_SCALES)}, got {color_scale!r}.")
    sdata, adata = resolve(data, table_key)
    gene_list = as_list(genes, "genes")
    if not gene_list:
        raise ValueError("`genes` is empty.")
    pred_panels = _gene_panels(adata, gene_list, key=pred_key, layer=None, normalize=None)
    meas_panels = _gene_panels(adata, gene_list, key=None, layer=layer, normalize=None)
    mask = spots_to_score(adata, in_tissue_only)
    r, _, _ = correlate(
        np.column_stack([p.values for p in pred_panels])[mask], np.column_stack([p.values for p in meas_panels])[mask]
    )
    n = len(gene_list)
    fig, grid = plt.subplots(
        2, n, figsize=(n * panel_size * 1.3, 2 * panel_size), dpi=dpi, squeeze=False, layout="constrained"
    )
    scene = _scene(
        sdata, adata, image=image, image_key=image_key, scale=scale, size=size, target_px=panel_size * dpi
    )
    for j, g in enumerate(gene_list):
        mp, pp = meas_panels[j], pred_panels[j]
        mp.title = f"{g} measured"
        pp.title = f"{g} predicted (r = {r[j]:.2f})" if np.isfinite(r[j]) else f"{g} predicted (r = n/a)"
        lo, hi = _pair_scale(mp, pp, mask, color_scale=color_scale, vmin=vmin, vmax=vmax)
        for i, panel in enumerate((mp, pp)):
            _draw(
                grid[i, j],
                scene,
                panel,
                cmap=cmap or (CMAP_DIVERGING if color_scale == "zscore" else CMAP),
                vmin=lo[i],
                vmax=hi[i],
                alpha=alpha,
                img_alpha=1.0,
                na_color="lightgrey",
                colorbar=True,
                title=None,
                scalebar=scalebar and i == 0 and j == 0,
            )
    what = {
        "shared": "measured and predicted on one colour scale per gene",
        "zscore": "each map z-scored (SD units)",
        "separate": "each map on its own colour scale",
    }[color_scale]
    fig.suptitle(title or f"Measured vs predicted expression, {what}; r over {int(mask.sum())} spots")
    finish(fig, list(grid.ravel()), own_figure=True, show=show, save=save, overwrite=overwrite, dpi=dpi)
    return None if show else fig


def _pair_scale(
    meas: _Panel, pred: _Panel, mask: np.ndarray, *, color_scale: str, vmin: Limit, vmax: Limit
) -> tuple[list[Limit], list[Limit]]:
    """Colour limits (measured, predicted) of one gene; z-scores the panels in place for ``"zscore"``."""
    if color_scale == "separate":
        return [vmin, vmin], [vmax, vmax]
    if color_scale == "zscore":
        for panel in (meas, pred):
            v = np.asarray(panel.values, dtype=float)
            ref = v[mask & np.isfinite(v)]
            sd = float(ref.std()) if ref.size else 0.0
            panel.values = (v - float(ref.mean())) / sd if sd > 0 else np.zeros_like(v)
            panel.label = "z-score (SD from the mean)"
        bound = float(vmax) if isinstance(vmax, int | float) else 3.0
        return [-bound, -bound], [bound, bound]
    pooled = np.concatenate([meas.values[mask], pred.values[mask]]).astype(float)
    finite = pooled[np.isfinite(pooled)]
    lo = _limit(vmin, finite, "vmin") if vmin is not None else (float(finite.min()) if finite.size else None)
    hi = _limit(vmax, finite, "vmax") if vmax is not None else (float(finite.max()) if finite.size else None)
    pred.label = meas.label  # one scale: the measured one
    return [lo, lo], [hi, hi]
