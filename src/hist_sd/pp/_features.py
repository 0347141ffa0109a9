"""``hs.pp.features``: one image patch per table row (spot or tile) through a patch encoder -> ``obsm["X_hist"]``."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from hist_sd import _constants as C
from hist_sd._core._data import get_meta, get_mpp, resolve
from hist_sd._core._image import get_image
from hist_sd._core._params import INPUT_KEYS, check_key_free, log_written, store_params
from hist_sd._core._runtime import progress as progress_bar
from hist_sd._docs import doc_params
from hist_sd.encoders._onnx import BACKENDS
from hist_sd.encoders._patches import (
    STAIN_METHODS,
    VIEWS,
    PatchReader,
    StainNormalizer,
    dihedral_views,
    pick_reference,
    prefetch,
    raster_order,
    to_model_input,
)
from hist_sd.encoders._registry import Encoder, get_encoder

if TYPE_CHECKING:
    import torch
    from anndata import AnnData
    from spatialdata import SpatialData
    from torch import nn

logger = logging.getLogger("hist_sd")

__all__ = ["features"]


@doc_params
def features(
    data: AnnData | SpatialData,
    *,
    encoder: str | nn.Module | Callable[..., Any] | Encoder = "efficientnet-lite0",
    weights: str | os.PathLike[str] | None = None,
    patch_um: float | Sequence[float] | None = None,
    views: int = 1,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    stain_norm: str | None = None,
    stain_reference: np.ndarray | None = None,
    encoder_kwargs: Mapping[str, Any] | None = None,
    num_workers: int = 1,
    num_threads: int | None = None,
    precision: str = "float32",
    backend: str = "auto",
    key_added: str = C.FEATURES,
    table_key: str | None = None,
    image_key: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> None:
    """Encode the H&E patch under every spot (or tile) into a feature vector.

    One square patch of side ``patch_um`` µm is cut around each ``obsm["spatial"]`` centre of the table
    (padded with white where it reaches over the image border), resized to the encoder's input size,
    optionally stain-normalised, normalised with the encoder's mean/std and encoded in batches. Patches
    are streamed: worker threads read and prepare the next batches while the model runs on the current one.
    Several ``patch_um`` sizes give multi-scale context (one concentric patch per size, features concatenated);
    ``views`` averages each patch's features over flips and rotations (test-time augmentation).

    Parameters
    ----------
    data
        SpatialData with an H&E image and a table whose ``uns["hist_sd"]`` holds the scale (from
        ``hs.io.read_*``).
    encoder
        A registered encoder name (:func:`hist_sd.pp.list_encoders`), ``"timm:<model name>"``, an
        :class:`~hist_sd.pp.Encoder`, or a :class:`torch.nn.Module` / callable mapping ``(B, 3, S, S)`` to
        ``(B, dim)`` (see :func:`hist_sd.pp.get_encoder`).
    weights
        Path of a checkpoint for the encoder (required for ``"ctranspath"`` and timm models).
    patch_um
        Patch side in µm; by default the spot diameter ``uns["hist_sd"]["spot_diameter_um"]`` (as in HiST).
        A sequence of distinct sizes, e.g. ``(100, 200, 400)``, encodes one concentric patch per size around
        every centre, each resized to the encoder's input size: the features are the concatenation of the
        sizes' features in the given order, ``(n_obs, len(patch_um) * dim)``, and
        ``uns[key_added]["params"]["blocks"]`` says which columns hold which size. The sizes of a spot are cut
        from one read of its largest patch (on a whole slide, from one read per pyramid level used: each size
        comes from the coarsest stored level that keeps the encoder's input size, as a single size would).
    views
        Test-time views: 1, 2, 4 or 8. Each patch is encoded under the first ``views`` of the 8 dihedral
        transforms (identity, horizontal flip, vertical flip, 180° rotation, then the transposes of these four)
        and its features are the mean over the views. The views go through the encoder in the same batches as
        other patches, so the run takes about ``views`` times as long.
    batch_size
        Patches per forward pass. On CPUs small batches are as fast as large ones (activations stay in cache)
        and keep memory low: 8 by default (measured here: 16 is no faster and costs ~250 MiB more at its peak).
        With several sizes or views, a spot's patches are encoded together with other spots' patches in
        passes of ``batch_size`` patches.
    device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, …  Preprocessing always runs on the
        CPU, so the features agree across devices up to float rounding.
    stain_norm
        ``None``, ``"macenko"`` or ``"reinhard"``: stain normalisation of each resized patch before the
        encoder's normalisation. Patches with almost no tissue are left unchanged.
    stain_reference
        RGB reference image ``(y, x, 3)`` for ``stain_norm``; by default the patch of this slide with the most
        tissue (among up to 256 evenly spread spots; patches of the first size when ``patch_um`` is a sequence).
        All sizes and views of a patch are normalised with the same reference.
    encoder_kwargs
        Extra options for :func:`hist_sd.pp.get_encoder` (e.g. ``input_size``, ``mean``, ``std``, ``name``).
    num_workers
        Threads preparing patches.
    num_threads
        CPU threads running the encoder (default: ``torch.get_num_threads()``). On the CPU, batches are encoded
        in parallel, each by one single-threaded forward pass (faster for small CNNs than torch's intra-op
        threads, and bitwise reproducible); torch's thread setting is restored afterwards. Ignored on GPUs.
    precision
        ``"float32"``, or ``"bfloat16"`` to run the encoder under bfloat16 autocast (faster on GPUs and on CPUs
        with AMX or AVX512-BF16; features then differ from float32 ones by ~6 % relative L2 norm on her2st
        patches, cosine similarity > 0.99). Refused on CPUs without those instructions, where torch emulates
        bfloat16 many times slower than float32.
    backend
        ``"auto"`` (ONNX Runtime for a float32 run on the CPU when ``onnxruntime`` is installed — the ``onnx``
        extra — and the encoder has a weights file; torch otherwise), ``"torch"`` or ``"onnx"``. The encoder is
        exported to ONNX once and cached (``$HIST_SD_CACHE_DIR/onnx``); its features equal torch's to ~1e-5.
    key_added
        Key of the features in ``.obsm`` and of the parameters in ``.uns``.
    %(table_key)s
    image_key
        Image element (default: the one recorded in ``uns["hist_sd"]``).
    overwrite
        Replace an existing ``obsm[key_added]`` (its dimension may change).
    %(progress)s

    Returns
    -------
    Nothing; writes to the table:

    - ``.obsm[key_added]``: ``(n_obs, dim)`` float32 features, rows in table order (``(n_obs, k * dim)`` for
      ``k`` patch sizes).
    - ``.uns[key_added]["params"]``: encoder name, dim (the encoder's output dimension), weights
      (``"<package>==<version>"`` for packaged weights, else the file path) and SHA-256, ``patch_um`` and
      ``patch_px`` (numbers, or arrays in the given order for a sequence of sizes), ``views``, input size,
      mean/std, stain normalisation. For a sequence of sizes also ``"blocks"``: ``{"patch_um": sizes,
      "start": first columns, "stop": ends}`` (arrays, one entry per size; columns ``start[i]:stop[i]`` of
      ``obsm[key_added]`` hold size ``i``'s features). Blocks are stored column-wise because h5ad and zarr
      cannot store a list of dictionaries.
    """
    import torch

    sdata, table = resolve(data, table_key)
    _check_features_args(
        sdata,
        table,
        key_added=key_added,
        batch_size=batch_size,
        stain_norm=stain_norm,
        stain_reference=stain_reference,
        num_threads=num_threads,
        precision=precision,
        backend=backend,
        views=views,
        overwrite=overwrite,
    )
    mpp = get_mpp(table)
    meta = get_meta(table)
    sizes_um, sizes_px = _patch_sizes(patch_um, meta, mpp)
    _, xy = _image_and_centres(sdata, table, image_key, patch_um=max(sizes_um), patch_px=max(sizes_px))

    enc = get_encoder(encoder, weights=weights, device=device, **dict(encoder_kwargs or {}))
    dev = enc.device
    _check_precision(precision, dev)
    runner = _runner(backend, enc, dev, precision)
    levels = _level_readers(sdata, table, image_key, xy, sizes_px, enc.input_size)

    normalizer, ref_index = _stain_normalizer(levels[0].reader, stain_norm, stain_reference)

    order = raster_order(levels[0].xy, min(sizes_px))
    n_model = int(num_threads or torch.get_num_threads()) if dev.type == "cpu" else 1
    out = _encode_patches(
        levels,
        normalizer,
        enc,
        order,
        n_obs=table.n_obs,
        views=views,
        batch_size=batch_size,
        num_workers=num_workers,
        n_model=n_model,
        precision=precision,
        runner=runner,
        progress=progress,
    )
    if not np.isfinite(out).all():
        logger.warning("%s: %d features are not finite.", key_added, int((~np.isfinite(out)).sum()))
    if normalizer is not None and normalizer.skipped:
        logger.info("%s: %d of %d patches had too little tissue for stain normalisation and were kept as they are.",
                    key_added, normalizer.skipped, table.n_obs * len(sizes_px))

    _write_features(
        table,
        key_added,
        out,
        enc,
        {
            **_size_params(patch_um, sizes_um, sizes_px, enc.dim),
            "views": int(views),
            "mpp": mpp,
            "stain_norm": stain_norm,
            "stain_reference": "user" if ref_index is None and stain_norm else (
                str(table.obs_names[ref_index]) if ref_index is not None else None
            ),
            "precision": precision,
            "backend": "torch" if runner is None else "onnx",
            "batch_size": int(batch_size),
            "device": str(dev),
            "image_key": image_key or meta.get(C.IMAGE_KEY),
        },
    )


def _check_features_args(
    sdata: SpatialData | None,
    table: AnnData,
    *,
    key_added: str,
    batch_size: int,
    stain_norm: str | None,
    stain_reference: np.ndarray | None,
    num_threads: int | None,
    precision: str,
    backend: str,
    views: int,
    overwrite: bool,
) -> None:
    """Check the arguments of :func:`features` and that the table has spots to encode."""
    if sdata is None:
        raise TypeError(
            "`data` must be a SpatialData with the H&E image (e.g. from `hs.io.read_st`); an AnnData has no image."
        )
    check_key_free(table.obsm, key_added, "obsm", overwrite=overwrite, protected=INPUT_KEYS["obsm"])
    check_key_free({}, key_added, "uns", protected=INPUT_KEYS["uns"])
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if stain_norm is not None and stain_norm not in STAIN_METHODS:
        raise ValueError(f"`stain_norm` must be None or one of {list(STAIN_METHODS)}, got {stain_norm!r}.")
    if stain_reference is not None and stain_norm is None:
        raise ValueError("`stain_reference` was given without `stain_norm`; pass stain_norm='macenko' or 'reinhard'.")
    if num_threads is not None and (not isinstance(num_threads, int | np.integer) or num_threads < 1):
        raise ValueError(f"`num_threads` must be None or a positive integer, got {num_threads!r}.")
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}.")
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"`precision` must be 'float32' or 'bfloat16', got {precision!r}.")
    if isinstance(views, bool) or not isinstance(views, int | np.integer) or int(views) not in VIEWS:
        raise ValueError(f"`views` must be one of {list(VIEWS)} (dihedral test-time views), got {views!r}.")
    if table.n_obs == 0:
        raise ValueError("The table has no rows: there is no spot to encode.")
    if C.SPATIAL not in table.obsm:
        raise KeyError(f"The table has no `obsm[{C.SPATIAL!r}]` spot centres (pixels of the image).")


def _patch_size(patch_um: float | None, meta: Mapping[str, Any], mpp: float) -> tuple[float, int]:
    """The patch side in µm (by default the spot diameter) and in pixels, checked."""
    if patch_um is None:
        patch_um = meta.get(C.SPOT_DIAMETER_UM)
        if patch_um is None or not np.isfinite(float(patch_um)):
            raise ValueError(f"`patch_um` was not given and `uns[{C.UNS_KEY!r}]` has no {C.SPOT_DIAMETER_UM!r}.")
    patch_um = float(patch_um)
    if not np.isfinite(patch_um) or patch_um <= 0:
        raise ValueError(f"`patch_um` must be a positive number of µm, got {patch_um!r}.")
    patch_px = int(round(patch_um / mpp))
    if patch_px < 1:
        raise ValueError(f"`patch_um`={patch_um} µm is less than one pixel ({mpp:.3g} µm per pixel).")
    return patch_um, patch_px


def _patch_sizes(
    patch_um: float | Sequence[float] | None, meta: Mapping[str, Any], mpp: float
) -> tuple[list[float], list[int]]:
    """The patch sides in µm and in pixels: one for a number (or ``None``), one per size for a sequence, checked."""
    if patch_um is None or np.ndim(patch_um) == 0:
        um, px = _patch_size(None if patch_um is None else float(patch_um), meta, mpp)
        return [um], [px]
    if np.ndim(patch_um) != 1 or len(patch_um) == 0:
        raise ValueError(f"`patch_um` must be a number of µm or a non-empty sequence of them, got {patch_um!r}.")
    sizes = [_patch_size(v, meta, mpp) for v in patch_um]
    um = [v for v, _ in sizes]
    if len(set(um)) < len(um):
        raise ValueError(f"`patch_um` must not repeat a size, got {um}.")
    px = [p for _, p in sizes]
    if len(set(px)) < len(px):
        raise ValueError(
            f"`patch_um`={um} µm gives patches of {px} px at {mpp:.3g} µm per pixel: two sizes are the same patch. "
            "Give sizes at least a pixel apart."
        )
    return um, px


def _size_params(
    patch_um: float | Sequence[float] | None, sizes_um: list[float], sizes_px: list[int], dim: int
) -> dict[str, Any]:
    """``patch_um`` / ``patch_px`` as recorded (numbers for one size, lists and column blocks for a sequence)."""
    if patch_um is None or np.ndim(patch_um) == 0:
        return {"patch_um": sizes_um[0], "patch_px": sizes_px[0]}
    return {
        "patch_um": list(sizes_um),
        "patch_px": list(sizes_px),
        "blocks": {
            "patch_um": list(sizes_um),
            "start": [i * int(dim) for i in range(len(sizes_um))],
            "stop": [(i + 1) * int(dim) for i in range(len(sizes_um))],
        },
    }


class _LevelReader(NamedTuple):
    """A patch reader of one image level, the centres in its pixels and the sizes it cuts (positions)."""

    reader: PatchReader
    xy: np.ndarray
    positions: list[int]


def _level_readers(
    sdata: SpatialData, table: AnnData, image_key: str | None, xy: np.ndarray, patch_px: Sequence[int],
    input_size: int,
) -> list[_LevelReader]:
    """One patch reader per image level read, the first holding the first size (as its own first size).

    Each size is read from its :func:`_closest_level`; the sizes of one level are cut from one read of their largest.
    """
    chosen: dict[int, tuple[Any, float, list[int]]] = {}
    for j, px in enumerate(patch_px):
        index, image, factor = _closest_level(sdata, table, image_key, int(px), input_size)
        chosen.setdefault(index, (image, factor, []))[2].append(j)
    out = []
    for index, (image, factor, positions) in chosen.items():
        if index == 0:  # full resolution: the centres and sides as given
            level_xy, read_px = xy, [int(patch_px[j]) for j in positions]
        else:
            level_xy, read_px = xy / factor, [max(int(round(patch_px[j] / factor)), 1) for j in positions]
        out.append(_LevelReader(PatchReader(image, level_xy, read_px, input_size), level_xy, positions))
    return out


def _closest_level(
    sdata: SpatialData, table: AnnData, image_key: str | None, patch_px: int, input_size: int
) -> tuple[int, Any, float]:
    """The image level to cut ``patch_px`` patches from: its index, the level and its downsample factor.

    For a whole slide (:func:`hist_sd.io.read_wsi`): the coarsest pyramid level stored in the slide file that
    still holds at least ``input_size`` pixels per patch side, so a 40x slide's 100 µm patches (400 px) are read
    from its 2x-downsampled level (200 px -> 224), decoding a quarter of the pixels. Other images, and slides
    without such a level (e.g. 145 px spot patches upsampled to 224), use the full-resolution image.
    """
    from hist_sd._core._image import image_levels, resolve_image_key, stored_source

    if image_key is None:
        image_key = table.uns.get(C.UNS_KEY, {}).get(C.IMAGE_KEY) or None
    key = resolve_image_key(sdata, image_key)
    levels = image_levels(sdata.images[key])
    if key not in sdata.attrs.get(C.UNS_KEY, {}).get(C.WSI_KEY, {}):
        return 0, levels[0][1], 1.0
    full_w = int(levels[0][1].shape[-1])
    best = 0
    for i in range(1, len(levels)):
        factor = full_w / int(levels[i][1].shape[-1])
        if patch_px / factor >= input_size and stored_source(levels, i) == i:
            best = i
    if best == 0:
        return 0, levels[0][1], 1.0
    factor = full_w / int(levels[best][1].shape[-1])
    logger.info("features: %d px patches read from pyramid level %s (downsample %.3g)", patch_px, levels[best][0],
                factor)
    return best, levels[best][1], factor


def _image_and_centres(
    sdata: SpatialData, table: AnnData, image_key: str | None, *, patch_um: float, patch_px: int
) -> tuple[Any, np.ndarray]:
    """The RGB image and the spot centres ``(x, y)`` in its pixels, checked against it and the patch size."""
    image = get_image(sdata, image_key, table=table)
    if tuple(image.dims) != ("c", "y", "x") or image.shape[0] != 3:
        raise ValueError(f"The image must be RGB (c=3, y, x); got dims {tuple(image.dims)} and shape {image.shape}.")
    height, width = int(image.shape[1]), int(image.shape[2])
    if patch_px > min(height, width):
        raise ValueError(
            f"`patch_um`={patch_um:g} µm is {patch_px} px, larger than the image ({width} x {height} px)."
        )
    xy = np.asarray(table.obsm[C.SPATIAL], dtype=np.float64)[:, :2]
    _check_centres(xy, height, width)
    return image, xy


def _stain_normalizer(
    reader: PatchReader, stain_norm: str | None, stain_reference: np.ndarray | None
) -> tuple[StainNormalizer | None, int | None]:
    """The stain normaliser (``None`` without ``stain_norm``) and the spot of its reference if picked here."""
    normalizer = None
    ref_index = None
    if stain_norm is not None:
        if stain_reference is None:
            ref_index, stain_reference = pick_reference(reader)
        normalizer = StainNormalizer(stain_norm, stain_reference)
    return normalizer, ref_index


def _encode_patches(
    levels: Sequence[_LevelReader],
    normalizer: StainNormalizer | None,
    enc: Encoder,
    order: np.ndarray,
    *,
    n_obs: int,
    views: int = 1,
    batch_size: int,
    num_workers: int,
    n_model: int,
    precision: str,
    runner: Callable[[Any], np.ndarray] | None = None,
    progress: bool,
) -> np.ndarray:
    """Features of all patches, read in batches along ``order``, encoded by ``n_model`` parallel passes.

    A spot gives ``n_sizes * views`` patches; a batch holds the fewest spots whose patches fill whole encoder
    passes of ``batch_size`` (``batch_size`` spots for one size and view, as without either), so memory stays
    bounded by ``lcm(batch_size, n_sizes * views)`` patches per batch in flight.
    """
    import torch

    dev = enc.device
    n_sizes = sum(len(level.positions) for level in levels)
    spots = batch_size // math.gcd(batch_size, n_sizes * views)
    batches = [order[i : i + spots] for i in range(0, len(order), spots)]
    pin = dev.type == "cuda"

    def prepare(idx: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        patches = _read_patches(levels, idx, n_sizes)
        if normalizer is not None:
            patches = normalizer(patches)
        return idx, to_model_input(dihedral_views(patches, views), enc.mean, enc.std, pin=pin)

    cpu = dev.type == "cpu"
    bf16 = precision == "bfloat16"

    def forward(x: torch.Tensor) -> np.ndarray:
        if runner is not None:  # ONNX Runtime, on the CPU
            return _checked(runner(x), len(x), enc)
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            feats = enc.module(x.to(dev, non_blocking=pin))
        return _checked(feats.float().cpu().numpy(), len(x), enc)

    def encode(item: tuple[np.ndarray, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        idx, x = item
        if len(x) <= batch_size:
            feats = forward(x)
        else:
            feats = np.concatenate([forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        return idx, _pool_views(feats, len(idx), n_sizes, views)

    out = np.empty((n_obs, n_sizes * enc.dim), dtype=np.float32)
    old_threads = torch.get_num_threads()
    if cpu:  # one intra-op thread per batch, batches in parallel: no OpenMP barriers, and bitwise reproducible
        torch.set_num_threads(1)
    try:
        stream = prefetch(prepare, batches, workers=num_workers, depth=num_workers + n_model)
        if n_model == 1:
            results = map(encode, stream)
        else:
            results = prefetch(encode, stream, workers=n_model, depth=n_model + 1, initializer=_single_thread)
        for idx, feats in _progress(results, progress, len(batches)):
            out[idx] = feats
    finally:
        torch.set_num_threads(old_threads)
    return out


def _read_patches(levels: Sequence[_LevelReader], idx: np.ndarray, n_sizes: int) -> np.ndarray:
    """``(len(idx) * n_sizes, s, s, 3)`` patches of the spots ``idx``, spot-major, sizes in their given order."""
    if len(levels) == 1:  # the sizes of one level, in order
        patches = levels[0].reader.read_sizes(idx)
    else:
        s = levels[0].reader.out_size
        patches = np.empty((len(idx), n_sizes, s, s, 3), dtype=np.uint8)
        for level in levels:
            patches[:, level.positions] = level.reader.read_sizes(idx)
    return patches.reshape(-1, *patches.shape[2:])


def _pool_views(feats: np.ndarray, n_spots: int, n_sizes: int, views: int) -> np.ndarray:
    """``(n_spots * n_sizes * views, dim)`` -> ``(n_spots, n_sizes * dim)``: mean over views, sizes side by side."""
    if views == 1:
        return feats.reshape(n_spots, -1)
    mean = feats.reshape(n_spots, n_sizes, views, -1).mean(axis=2, dtype=np.float64)
    return mean.astype(np.float32).reshape(n_spots, -1)


def _checked(feats: np.ndarray, n: int, enc: Encoder) -> np.ndarray:
    if feats.ndim != 2 or feats.shape != (n, enc.dim):
        raise ValueError(f"Encoder {enc.name!r} returned shape {tuple(feats.shape)}, expected ({n}, {enc.dim}).")
    return feats


def _check_precision(precision: str, dev: torch.device) -> None:
    """Refuse bfloat16 where torch would emulate it (a silent path many times slower than float32)."""
    from hist_sd._core._runtime import fast_bf16

    if precision == "bfloat16" and not fast_bf16(dev):
        raise ValueError(
            f"`precision='bfloat16'` is not native on this {dev.type.upper()} (no AMX or AVX512-BF16 instructions, "
            "or a GPU without bf16): torch would emulate it, many times slower than float32. Use "
            "precision='float32'."
        )


def _runner(backend: str, enc: Encoder, dev: torch.device, precision: str) -> Callable[[Any], np.ndarray] | None:
    """The ONNX Runtime encoder when ``backend`` resolves to it, else ``None`` (torch)."""
    from hist_sd.encoders._onnx import OnnxEncoder, resolve_backend

    kind = resolve_backend(backend, enc, device_type=dev.type, precision=precision)
    logger.info("features: %s runs on %s", enc.name, "ONNX Runtime" if kind == "onnx" else f"torch ({dev})")
    return OnnxEncoder(enc) if kind == "onnx" else None


def _write_features(
    table: AnnData, key_added: str, out: np.ndarray, enc: Encoder, run_params: Mapping[str, Any]
) -> None:
    """Write the features to ``obsm[key_added]``, the encoder's and run's parameters to ``uns[key_added]``."""
    old = table.obsm.get(key_added)
    if old is not None and np.shape(old)[1:] != out.shape[1:]:
        logger.warning("%s: replacing %s features of dimension %s by %d-d ones.", key_added, key_added,
                       np.shape(old)[1:], out.shape[1])
    table.obsm[key_added] = out
    params = dict(enc.describe())
    params.update(run_params)
    params.update({f"encoder_{k}": v for k, v in enc.extra.items()})
    store_params(table, key_added, params)
    log_written("obsm", key_added)
    log_written("uns", key_added)


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _progress(stream: Any, enabled: bool, total: int) -> Any:
    return progress_bar(stream, enabled=enabled, total=total, desc="patch features", unit="batch")


def _check_centres(xy: np.ndarray, height: int, width: int) -> None:
    bad = ~np.isfinite(xy).all(axis=1) | (xy[:, 0] < 0) | (xy[:, 1] < 0) | (xy[:, 0] >= width) | (xy[:, 1] >= height)
    if bad.any():
        first = xy[bad][0]
        raise ValueError(
            f"{int(bad.sum())} of {len(xy)} spot centres (`obsm[{C.SPATIAL!r}]`) lie outside the image "
            f"({width} x {height} px), e.g. x={first[0]:.1f}, y={first[1]:.1f}."
        )
