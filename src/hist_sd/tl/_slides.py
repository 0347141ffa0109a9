"""``hs.tl.predict_slides``: many slides, one dask.distributed task each, resumable, failures reported."""

from __future__ import annotations

import logging
import os
import pickle
import re
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hist_sd._core._files import atomic_path
from hist_sd._core._runtime import progress as progress_bar
from hist_sd._core._validate import patch_record, patch_sizes
from hist_sd._docs import doc_params

if TYPE_CHECKING:
    from distributed import Client
    from spatialdata import SpatialData

    from hist_sd.model import HistModel

logger = logging.getLogger("hist_sd")

__all__ = ["SLIDE_SUFFIXES", "check_slides_args", "predict_slides", "slide_name"]

#: File endings read by :func:`hist_sd.io.read_wsi` (whole-slide images; ``.ome.tif(f)`` ends in ``.tif(f)``).
WSI_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".bif")
#: File endings read by :func:`hist_sd.io.read_image` (plain images; they need ``mpp``).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SLIDE_SUFFIXES = WSI_SUFFIXES + IMAGE_SUFFIXES
#: Columns of the table :func:`predict_slides` returns and writes to ``out/slides.csv``.
COLUMNS = ("slide", "path", "status", "n_tiles", "seconds", "error", "zarr")
SUMMARY_FILE = "slides.csv"
#: The features :func:`predict_slides` passes to :func:`hist_sd.pp.features` unless ``features_kwargs`` says otherwise.
_FEATURES_DEFAULTS: dict[str, Any] = {"device": "cpu", "progress": False}
#: Arguments of :func:`hist_sd.pp.features` that ``predict_slides`` sets itself (from the model).
_FEATURES_RESERVED = ("encoder", "patch_um", "table_key", "key_added", "overwrite")


def slide_name(path: str | os.PathLike[str]) -> str:
    """The name of a slide: its file name without the ending (``a.ome.tiff`` -> ``a``, ``b.svs`` -> ``b``)."""
    name = Path(path).name
    low = name.lower()
    for end in (".ome.tiff", ".ome.tif", *SLIDE_SUFFIXES):
        if low.endswith(end):
            return name[: -len(end)]
    return Path(name).stem


@dataclass(frozen=True)
class _Job:
    """One slide to predict: what a worker needs (plain values, sent to the worker)."""

    slide: str
    path: str
    zarr: str
    mpp: float | None
    tile_um: float
    patch_um: float | list[float] | None
    features_kwargs: dict[str, Any]
    overwrite: bool


def check_slides_args(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    model: HistModel | str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    mpp: float | None = None,
    tile_um: float | None = None,
    patch_um: float | None = None,
    n_workers: int = 2,
    features_kwargs: Mapping[str, Any] | None = None,
) -> tuple[list[Path], HistModel, float, float | None]:
    """Check the arguments of :func:`predict_slides` before any work.

    Returns the slide paths, the model (loaded when a path is given), the tile side and the patch side (µm).
    Raises :class:`FileNotFoundError` for missing slides or model file and :class:`ValueError` for anything
    else that cannot work (unknown file endings, two slides of one name, a file that is not a model, ``out``
    being a file, a plain image without ``mpp``, ...).
    """
    files = _check_paths(paths)
    for name, value in (("mpp", mpp), ("tile_um", tile_um), ("patch_um", patch_um)):
        if value is not None and not (isinstance(value, int | float | np.number) and np.isfinite(value) and value > 0):
            raise ValueError(f"`{name}` must be a positive number (µm), got {value!r}.")
    plain = [p for p in files if p.name.lower().endswith(IMAGE_SUFFIXES)]
    if plain and mpp is None:
        raise ValueError(
            f"`mpp` is needed for plain images, which carry no scale ({', '.join(p.name for p in plain[:3])}"
            f"{', ...' if len(plain) > 3 else ''}): pass the µm per pixel of the scan (e.g. 0.5 at 20x)."
        )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out`: {str(out)!r} is a file; expected a folder (created when missing) for the results.")
    if isinstance(n_workers, bool) or not isinstance(n_workers, int | np.integer) or n_workers < 1:
        raise ValueError(f"`n_workers` must be an integer of at least 1, got {n_workers!r}.")
    bad = sorted(set(features_kwargs or {}) & set(_FEATURES_RESERVED))
    if bad:
        raise ValueError(f"`features_kwargs` must not set {bad}: predict_slides sets them from the model.")
    model = _check_model(model)
    sizes = patch_sizes(patch_um if patch_um is not None else model.patch_um)
    tile = tile_um or model.spacing_um or (sizes[0] if sizes else None)
    if tile is None:
        raise ValueError("The model records neither the spacing nor the patch size of its training spots: pass `tile_um`.")
    return files, model, float(tile), patch_record(sizes)


def _check_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The slide files as paths: all exist, have a known ending and distinct names."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files = [Path(p) for p in paths]
    if not files:
        raise ValueError("`paths` is empty: pass the slide files to predict.")
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"`paths`: {len(missing)} slide file(s) do not exist: {', '.join(map(repr, missing[:5]))}"
            + (", ..." if len(missing) > 5 else "") + "."
        )
    unknown = [p.name for p in files if not p.name.lower().endswith(SLIDE_SUFFIXES)]
    if unknown:
        raise ValueError(
            f"`paths`: unknown slide format {unknown[:5]}; expected one of {', '.join(SLIDE_SUFFIXES)} "
            "(and .ome.tif / .ome.tiff)."
        )
    seen: dict[str, Path] = {}
    for p in files:
        name = slide_name(p)
        if name in seen:
            raise ValueError(
                f"`paths`: two slides are both called {name!r} ({str(seen[name])!r} and {str(p)!r}); each slide's "
                f"results go to out/<name>.zarr, so names must differ: rename one, or run them into another `out`."
            )
        seen[name] = p
    return files


def _check_model(model: Any) -> HistModel:
    """The model itself: a :class:`HistModel`, or the one saved at a path."""
    from hist_sd.model import HistModel, load_model

    if isinstance(model, str | os.PathLike):
        if not Path(model).is_file():
            raise FileNotFoundError(f"`model`: no model file at {str(model)!r}.")
        try:
            loaded = load_model(model)
        except (ValueError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            why = re.sub(r"^`path`: '[^']*'[:.]? ?", "", str(err)) or type(err).__name__
            raise ValueError(f"`model`: {str(model)!r} is not a hist_sd model file ({why.rstrip('.')}).") from err
        if not isinstance(loaded, HistModel):
            raise ValueError(
                f"`model`: {str(model)!r} is a {type(loaded).__name__}, not an expression or tumour model "
                "(hs.tl.train): it cannot predict tiles."
            )
        model = loaded
    if not isinstance(model, HistModel):
        raise TypeError(f"`model` must be a HistModel or the path of a saved one, got {type(model).__name__}.")
    if model.encoder in ("", "unknown"):
        raise ValueError(
            "`model` records no encoder (its training features had no `hs.pp.features` record): the slides' "
            "features cannot be computed with the same encoder."
        )
    return model


@doc_params
def predict_slides(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    model: HistModel | str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    mpp: float | None = None,
    tile_um: float | None = None,
    patch_um: float | None = None,
    client: Client | str | None = None,
    n_workers: int = 2,
    overwrite: bool = False,
    progress: bool = True,
    features_kwargs: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Predict many slides, one dask.distributed task per slide, each into its own zarr store.

    Every slide is read (whole-slide formats with :func:`hist_sd.io.read_wsi`, JPEG/PNG with
    :func:`hist_sd.io.read_image`), tiled over its tissue (:func:`hist_sd.pp.tile`), encoded
    (:func:`hist_sd.pp.features`, with the model's encoder and patch size) and predicted
    (:func:`hist_sd.tl.predict`); the tiles, their features and the predicted table are written atomically to
    ``out/<slide>.zarr`` (:func:`hist_sd.io.write_zarr`; the slide's image is not copied there: the slide file
    remains its source). A run is resumable: slides whose store exists are skipped, so re-running the same
    command after an interruption or a failure does only what is missing. A slide that fails (corrupt file,
    no tissue, ...) is reported and the others finish.

    Parameters
    ----------
    paths
        Slide files: ``.svs``, ``.tif``/``.tiff`` (pyramidal or OME-TIFF), ``.ndpi``, ``.mrxs``, ``.scn``,
        ``.bif`` or plain ``.jpg``/``.jpeg``/``.png`` images. Their names (file names without the ending) must
        differ.
    model
        A :class:`~hist_sd.tl.HistModel`, or the path of a saved one (sent to the workers as a path and loaded
        there: the workers must see the same file system, as they must for the slides).
    out
        Results folder (created when missing): ``<slide>.zarr`` per slide and ``slides.csv``.
    mpp
        µm per pixel of the slides: required for JPEG/PNG; for whole-slide files it replaces the scale in the
        file's metadata (needed when the file has none).
    tile_um
        Tile side and spacing in µm (default: the model's training spot spacing, else its patch size).
    patch_um
        Side in µm of the patch encoded per tile (default: the model's training patch size).
    client
        A :class:`distributed.Client`, the address of a running scheduler (``"tcp://host:8786"``), or ``None``:
        a local cluster of ``n_workers`` single-threaded worker processes, started and closed by this call.
        Within one worker process, slides run one at a time, and the encoder uses the worker's threads.
    n_workers
        Worker processes of the local cluster (``client=None`` only).
    overwrite
        Redo every slide, replacing its store (each store is replaced only once its new version is complete).
    %(progress)s
        One step per finished slide.
    features_kwargs
        Further options of :func:`hist_sd.pp.features` (e.g. ``{"device": "cuda", "batch_size": 64}``; by
        default ``device="cpu"``); ``encoder`` and ``patch_um`` come from the model.

    Returns
    -------
    One row per slide, in the order of ``paths``: ``slide``, ``path``, ``status`` (``"done"``, ``"skipped"``:
    its store existed, or ``"failed"``), ``n_tiles``, ``seconds`` (the slide's time on its worker), ``error``
    (``"<Exception>: message"`` of a failed slide) and ``zarr`` (the store). Also written to
    ``out/slides.csv`` (atomically). ``attrs["total_seconds"]`` is the wall time of the call.
    """
    t0 = time.perf_counter()
    files, model_obj, tile, patch = check_slides_args(
        paths, model, out=out, mpp=mpp, tile_um=tile_um, patch_um=patch_um, n_workers=n_workers,
        features_kwargs=features_kwargs,
    )
    out = Path(out).resolve()  # absolute paths: the workers may run elsewhere (on a shared file system)
    out.mkdir(parents=True, exist_ok=True)
    feats = {**_FEATURES_DEFAULTS, **dict(features_kwargs or {})}
    jobs = [
        _Job(slide=slide_name(p), path=str(p.resolve()), zarr=str(out / f"{slide_name(p)}.zarr"), mpp=mpp, tile_um=tile,
             patch_um=patch, features_kwargs=feats, overwrite=overwrite)
        for p in files
    ]
    done = [j for j in jobs if not overwrite and Path(j.zarr).exists()]
    previous = _previous(out) if done else {}
    rows = {j.slide: _skipped(j, previous) for j in done}
    todo = [j for j in jobs if j.slide not in rows]
    if rows:
        logger.info("%d of %d slides are done already (their stores exist): skipped.", len(rows), len(jobs))
    if todo:
        ref = str(Path(model).resolve()) if isinstance(model, str | os.PathLike) else model_obj.state()
        rows.update(_run_jobs(todo, ref, client=client, n_workers=n_workers, progress=progress))
    table = pd.DataFrame([rows[j.slide] for j in jobs], columns=list(COLUMNS))
    table["n_tiles"] = table["n_tiles"].astype("Int64")
    table["seconds"] = table["seconds"].astype(float)
    with atomic_path(out / SUMMARY_FILE, overwrite=True) as tmp:
        table.to_csv(tmp, index=False)
    table.attrs["total_seconds"] = round(time.perf_counter() - t0, 3)
    n_failed = int((table["status"] == "failed").sum())
    log = logger.warning if n_failed else logger.info
    log("%d slides: %d done, %d skipped, %d failed in %.1f s; summary in %s", len(table),
        int((table["status"] == "done").sum()), int((table["status"] == "skipped").sum()), n_failed,
        table.attrs["total_seconds"], out / SUMMARY_FILE)
    return table


def _previous(out: Path) -> dict[str, Any]:
    """``slide -> n_tiles`` of the slides an earlier run recorded as done or skipped (empty without a record)."""
    try:
        old = pd.read_csv(out / SUMMARY_FILE)
        old = old[old["status"].isin(["done", "skipped"])]
        return {str(s): int(n) for s, n in zip(old["slide"], old["n_tiles"], strict=True) if pd.notna(n)}
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return {}


def _skipped(job: _Job, previous: Mapping[str, Any]) -> dict[str, Any]:
    return {"slide": job.slide, "path": job.path, "status": "skipped", "n_tiles": previous.get(job.slide),
            "seconds": 0.0, "error": None, "zarr": job.zarr}


def _run_jobs(
    jobs: Sequence[_Job], model_ref: str | dict[str, Any], *, client: Client | str | None, n_workers: int,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """Run the slides on a cluster; one row per slide, failures (of the slide or of its worker) included."""
    from distributed import as_completed

    rows: dict[str, dict[str, Any]] = {}
    with _connect(client, n_workers) as cl:
        ref = model_ref if isinstance(model_ref, str) else cl.scatter(model_ref, broadcast=True, hash=False)
        futures = {cl.submit(_run_slide, job, ref, key=f"hist-sd-slide-{job.slide}-{os.urandom(4).hex()}",
                             pure=False, retries=0): job for job in jobs}
        for fut in progress_bar(as_completed(futures), enabled=progress, total=len(jobs), desc="slides",
                                unit="slide"):
            job = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 - the worker itself died (memory, crash): the slide failed
                row = _row(job, "failed", error=f"{type(exc).__name__}: {exc}")
            for message in row.pop("warnings", ()):
                logger.warning("%s: %s", job.slide, message)
            if row["status"] == "failed":
                logger.warning("%s failed: %s", job.slide, row["error"])
            rows[job.slide] = row
    return rows


@contextmanager
def _connect(client: Client | str | None, n_workers: int) -> Iterator[Client]:
    """The client to use: the caller's, one connected to a scheduler address, or one of a new local cluster."""
    from distributed import Client, LocalCluster

    if client is None:
        chatter = logging.getLogger("distributed")  # the start and stop of a private cluster: not news
        level = chatter.level
        chatter.setLevel(max(chatter.getEffectiveLevel(), logging.WARNING))
        try:
            with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
                    Client(lc) as cl:
                logger.info("a local dask cluster of %d worker processes: %s", n_workers, lc.scheduler_address)
                yield cl
        finally:
            chatter.setLevel(level)
    elif isinstance(client, str):
        try:
            cl = Client(client)
        except OSError as err:
            raise ValueError(f"`client`: cannot connect to a dask scheduler at {client!r} ({err}).") from err
        with cl:
            yield cl
    elif isinstance(client, Client):
        yield client
    else:
        raise TypeError(f"`client` must be a distributed.Client, a scheduler address or None, got {type(client).__name__}.")


def _row(job: _Job, status: str, *, n_tiles: int | None = None, seconds: float = 0.0,
         error: str | None = None) -> dict[str, Any]:
    return {"slide": job.slide, "path": job.path, "status": status, "n_tiles": n_tiles,
            "seconds": round(seconds, 3), "error": error, "zarr": job.zarr}


#: One slide at a time per worker process: warnings are caught per slide, and the encoder takes the worker's threads.
_SLIDE_LOCK = threading.Lock()
#: Warnings of the libraries underneath, not worth a line per slide.
_QUIET = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
#: (path, size, mtime) -> model, per worker process.
_MODELS: dict[tuple[str, int, int], HistModel] = {}


def _run_slide(job: _Job, model_ref: str | dict[str, Any]) -> dict[str, Any]:
    """The task of one slide, on a worker: read, tile, encode, predict, write; a failure is a ``failed`` row."""
    import dask

    import hist_sd.io
    import hist_sd.pp
    import hist_sd.tl._predict  # noqa: F401 - imported before the clock starts: a worker's first slide imports them

    t0 = time.perf_counter()
    # the slide's lazy arrays are computed here, in this task: never handed back to the cluster (which would
    # deadlock a worker whose threads all wait for their own sub-tasks)
    with _SLIDE_LOCK, dask.config.set(scheduler="synchronous"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            n_tiles = _predict_one(job, _worker_model(model_ref))
            row = _row(job, "done", n_tiles=n_tiles, seconds=time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - one slide's failure is reported, the others go on
            error = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
            row = _row(job, "failed", seconds=time.perf_counter() - t0, error=error)
    seen: list[str] = []
    for w in caught:
        if issubclass(w.category, _QUIET):
            continue
        text = f"{w.category.__name__}: {w.message}"
        if text not in seen:
            seen.append(text)
    row["warnings"] = seen
    return row


def _worker_model(ref: str | dict[str, Any]) -> HistModel:
    """The model on a worker: loaded once per process from its file, or rebuilt from a state sent along."""
    from hist_sd.model import HistModel, load_model

    if not isinstance(ref, str):
        return HistModel.from_state(ref)
    st = os.stat(ref)
    key = (os.path.abspath(ref), st.st_size, st.st_mtime_ns)
    if key not in _MODELS:
        _MODELS.clear()
        loaded = load_model(ref)
        if not isinstance(loaded, HistModel):
            raise ValueError(f"{ref!r} is not an expression or tumour model.")
        _MODELS[key] = loaded
    return _MODELS[key]


def _predict_one(job: _Job, model: HistModel) -> int:
    """Read, tile, encode and predict one slide, write its store; the number of tiles."""
    from hist_sd.io import write_zarr
    from hist_sd.pp import features, tile
    from hist_sd.tl._predict import predict

    sdata = _read_slide(job)
    tile(sdata, tile_um=job.tile_um, key_added="tiles")
    kwargs = dict(job.features_kwargs)
    if "num_threads" not in kwargs:
        kwargs["num_threads"] = _worker_threads()
    features(sdata, encoder=model.encoder, patch_um=job.patch_um, table_key="tiles", **kwargs)
    predict(sdata, model, table_key="tiles", device=str(kwargs.get("device", "cpu")))
    n_tiles = int(sdata.tables["tiles"].n_obs)
    write_zarr(_without_images(sdata, job), job.zarr, overwrite=job.overwrite)
    return n_tiles


def _read_slide(job: _Job) -> SpatialData:
    """The slide as a SpatialData, by its file ending."""
    name = re.sub(r"[^\w.-]", "_", job.slide) or "slide"
    if job.path.lower().endswith(IMAGE_SUFFIXES):
        from hist_sd.io import read_image

        return read_image(job.path, mpp=job.mpp, name=name)
    from hist_sd.io import read_wsi  # type: ignore[attr-defined]

    return read_wsi(job.path, mpp=job.mpp, name=name)


def _worker_threads() -> int:
    """Threads of the dask worker running this task (1 outside a worker)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def _without_images(sdata: SpatialData, job: _Job) -> SpatialData:
    """The slide's results to store: every element but the images (the slide file stays their source)."""
    from spatialdata import SpatialData

    from hist_sd import _constants as C

    attrs = dict(sdata.attrs)
    attrs[C.UNS_KEY] = {**dict(attrs.get(C.UNS_KEY, {})), "slide_path": os.path.abspath(job.path)}
    return SpatialData(labels=dict(sdata.labels), points=dict(sdata.points), shapes=dict(sdata.shapes),
                       tables=dict(sdata.tables), attrs=attrs)
