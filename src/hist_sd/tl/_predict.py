"""Apply a trained model to a slide and write the predictions where scanpy/squidpy/decoupler find them."""

from __future__ import annotations

import logging
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._core._data import is_prediction, resolve
from hist_sd._core._grid import pick_layout
from hist_sd._core._params import check_key_free, input_keys, log_written, store_params
from hist_sd._core._runtime import get_device
from hist_sd._core._validate import patch_sizes, patch_text
from hist_sd._core._warnings import GridSpacingWarning, TooFewGenesWarning, UnrecordedFeaturesWarning
from hist_sd._docs import doc_params
from hist_sd.model import HistModel, load_model, prepare_section
from hist_sd.model._section import feature_params

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")


@doc_params
def predict(
    data: AnnData | SpatialData,
    model: HistModel | str,
    *,
    key_added: str | None = None,
    table_added: str | None = None,
    device: str = "auto",
    table_key: str | None = None,
    overwrite: bool = False,
) -> None:
    """Predict expression (or tumour probability) for every spot or tile of a slide.

    Parameters
    ----------
    data
        A slide with features in ``obsm[model.features_key]`` (:func:`hist_sd.pp.features`).
    model
        A :class:`~hist_sd.tl.HistModel` or the path of a saved one.
    key_added
        Where predictions go. Expression: ``.obsm[key_added]`` (spots x model genes, float32) with the gene
        names in ``.uns[key_added]["genes"]`` (default ``"hist_pred"``). Tumour: the probability in
        ``.obs[key_added]`` (default ``"hist_tumor"``).
    table_added
        Expression only: also add a predicted AnnData table under this name to the SpatialData, whose ``.X``
        (and ``layers["hist_pred"]``) hold the predictions with the model's genes as ``var_names``, annotating
        the same spots, ready for ``sc.pp.*``, ``sq.gr.*`` and ``dc.mt.*`` (it carries scanpy's ``uns["log1p"]``
        marker and the slide's ``uns["spatial"]``; for squidpy's neighbour graph on legacy ST or tiles use
        ``sq.gr.spatial_neighbors_grid(table, n_neighs=4)``). A slide without measured expression
        (a tiled bare image, whose table has no genes) gets such a table by default, named ``key_added``
        (``"hist_pred"``). A predicted table with fewer genes than copy-number inference needs raises a
        :class:`~hist_sd.TooFewGenesWarning`.
    %(device)s
    %(table_key)s
    overwrite
        Replace the results of an earlier prediction under the same key, all together (``obsm``/``obs``,
        ``uns`` and the table it added). Inputs (coordinates, features, counts, ``in_tissue``, measured tables)
        are never replaced.

    Returns
    -------
    Nothing; writes into ``data``. Refuses features of another encoder, dimension or patch size, slides of
    another grid geometry and slides without any spot in tissue; spatial models warn
    (:class:`~hist_sd.GridSpacingWarning`) when spots or tiles are spaced unlike the training spots.
    """
    if not isinstance(model, HistModel):
        model = load_model(model)
    sdata, adata = resolve(data, table_key)
    task = model.task_spec
    key = key_added or task.key
    table_added = _check_targets(sdata, adata, model, key, table_added, overwrite=overwrite)
    layout = _check_features(adata, model)
    t0 = time.perf_counter()
    section = prepare_section(
        adata, features_key=model.features_key, layout=layout, pad_multiple=int(model.grid.get("pad_multiple", 16))
    )
    if not section.in_tissue.any():
        raise ValueError(
            "No spot of this slide is in tissue (`obs['in_tissue']` is 0 or missing everywhere): there is nothing to "
            "predict. Check `obs['in_tissue']`, or tile the tissue with `hs.pp.tile`."
        )
    out = task.link(model.predict_section(section, device=get_device(device)))
    run_params = {"method": model.method, "task": model.task, "features_key": model.features_key,
                  "encoder": model.encoder, "seconds": round(time.perf_counter() - t0, 3)}
    container = getattr(adata, task.location)
    if overwrite:  # replace every element a previous prediction under `key` wrote, together
        adata.uns.pop(key, None)
        if key in container:
            del container[key]
    if task.location == "obs":
        adata.obs[key] = out[:, 0].astype(np.float32)
        store_params(adata, key, run_params)
        log_written("obs", key)
        return None
    pred = np.ascontiguousarray(out, dtype=np.float32)
    adata.obsm[key] = pred
    extra = {"table": table_added} if table_added is not None else {}
    store_params(adata, key, run_params, genes=list(model.genes), **extra)
    log_written("obsm", key)
    if table_added is not None:
        _add_predicted_table(sdata, adata, pred, model, name=table_added, key=key, params=run_params)
    return None


def _check_targets(
    sdata: SpatialData | None, adata: AnnData, model: HistModel, key: str, table_added: str | None, *, overwrite: bool
) -> str | None:
    """Check where the predictions go (never onto an input) and return the predicted table's name, if any."""
    task = model.task_spec
    for where in (task.location, "uns"):
        check_key_free(getattr(adata, where), key, where, overwrite=overwrite, protected=input_keys(adata, where))
    if task.location != "obsm":
        if table_added is not None:
            raise ValueError(f"`table_added` is for predicted matrices; task {model.task!r} writes `obs[{key!r}]`.")
        return None
    previous = adata.uns.get(key) if overwrite else None
    if table_added is None and isinstance(previous, dict) and previous.get("table") and sdata is not None:
        table_added = str(previous["table"])  # the table written with the old predictions is replaced too
    if table_added is None and adata.n_vars == 0 and sdata is not None:
        table_added = key
    if table_added is None:
        return None
    if sdata is None:
        raise ValueError("`table_added` needs a SpatialData to add the table to; `data` is an AnnData.")
    existing = sdata.tables.get(table_added)
    if existing is adata or (existing is not None and not is_prediction(existing)):
        raise KeyError(
            f"`tables[{table_added!r}]` holds measured data, not predictions; a result never replaces it, not even "
            "with `overwrite=True`. Pass another `table_added`."
        )
    check_key_free(sdata.tables, table_added, "tables", overwrite=overwrite)
    return table_added


def _check_features(adata: AnnData, model: HistModel) -> str:
    """Refuse features the model was not trained for; return the slide's grid layout."""
    if model.features_key not in adata.obsm:
        raise KeyError(
            f"The model reads features from `obsm[{model.features_key!r}]`, which this slide lacks; run "
            f"`hs.pp.features(data, encoder={model.encoder!r}, key_added={model.features_key!r})` first."
        )
    params = feature_params(adata, model.features_key)
    if "encoder" not in params:
        warnings.warn(
            f"`obsm[{model.features_key!r}]` has no record of its encoder (`uns[{model.features_key!r}]['params']`, "
            f"written by `hs.pp.features`): it cannot be checked against the model's ({model.encoder!r}).",
            UnrecordedFeaturesWarning,
            stacklevel=3,
        )
    layout = _data_layout(adata, model)
    model.check_data(
        features_key=model.features_key,
        feature_dim=int(np.shape(adata.obsm[model.features_key])[1]),
        encoder=str(params["encoder"]) if "encoder" in params else None,
        patch_um=params.get("patch_um"),
        layout=layout,
    )
    spacing = adata.uns.get(C.UNS_KEY, {}).get(C.SPOT_SPACING_UM)
    if model.kind != "spot" and model.spacing_um and spacing is not None and np.isfinite(float(spacing)):
        if abs(float(spacing) - model.spacing_um) > 0.05 * model.spacing_um:
            warnings.warn(
                f"The spots or tiles of this slide are {float(spacing):g} µm apart; the {model.method!r} model learned "
                f"spatial context on spots {model.spacing_um:g} µm apart. Tile at `tile_um={model.spacing_um:g}` "
                f"and compute features with `patch_um={patch_text(patch_sizes(model.patch_um) or (model.spacing_um,))}`.",
                GridSpacingWarning,
                stacklevel=3,
            )
    return layout


def _add_predicted_table(
    sdata: SpatialData, adata: AnnData, pred: np.ndarray, model: HistModel, *, name: str, key: str, params: dict
) -> None:
    from spatialdata.models import TableModel

    obs = adata.obs.copy()
    region = obs[C.REGION_KEY].astype(str).iloc[0] if C.REGION_KEY in obs else adata.uns.get(C.UNS_KEY, {}).get(C.SHAPES_KEY)
    uns = {C.UNS_KEY: {**dict(adata.uns.get(C.UNS_KEY, {})), "prediction": key},
           "log1p": {"base": None}}  # scanpy's marker: predictions are log1p of counts per 10,000
    if "spatial" in adata.uns:  # images + scale factors: sc.pl.spatial / sq.pl.spatial_scatter draw the H&E
        uns["spatial"] = adata.uns["spatial"]
    pt = AnnData(
        X=pred.copy(),
        obs=obs,
        var=pd.DataFrame(index=pd.Index(model.genes, dtype=str)),
        obsm={C.SPATIAL: np.asarray(adata.obsm[C.SPATIAL]).copy()} if C.SPATIAL in adata.obsm else None,
        uns=uns,
    )
    pt.layers[C.PRED] = pred.copy()
    store_params(pt, key, params, genes=list(model.genes))
    pt = TableModel.parse(pt, region=region, region_key=C.REGION_KEY, instance_key=C.INSTANCE_KEY)
    if name in sdata.tables:
        del sdata.tables[name]
    sdata.tables[name] = pt
    log_written("tables", name)
    if pt.n_vars < C.MIN_CNV_GENES:
        warnings.warn(
            f"The predicted table {name!r} has {pt.n_vars} genes. Copy-number inference (infercnvpy, "
            f"`hs.tl.tumor_labels`) needs at least {C.MIN_CNV_GENES} genes with genomic positions and gives "
            "meaningless profiles on fewer; enrichment scores are only as broad as the gene list.",
            TooFewGenesWarning,
            stacklevel=3,
        )


def _data_layout(adata: AnnData, model: HistModel) -> str:
    """The slide's own grid layout (from ``uns["hist_sd"]["technology"]``), else the model's."""
    try:
        return pick_layout(adata, "auto")
    except ValueError:
        if model.layout == "auto":
            raise
        return model.layout
