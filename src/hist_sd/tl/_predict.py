"""Apply a trained model to a slide and write the predictions where scanpy/squidpy/decoupler find them."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._core._data import resolve
from hist_sd._core._grid import pick_layout
from hist_sd._core._params import check_key_free, log_written, store_params
from hist_sd._core._runtime import get_device
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
        the same spots, ready for ``sc.pp.*``, ``sq.gr.*`` and ``dc.mt.*``. A slide without measured expression
        (a tiled bare image, whose table has no genes) gets such a table by default, named ``key_added``.
    %(device)s
    %(table_key)s
    overwrite
        Replace existing results under the same keys.

    Returns
    -------
    Nothing; writes into ``data``.
    """
    if not isinstance(model, HistModel):
        model = load_model(model)
    sdata, adata = resolve(data, table_key)
    task = model.task_spec
    key = key_added or task.key
    check_key_free(getattr(adata, task.location), key, task.location, overwrite=overwrite)
    if model.features_key not in adata.obsm:
        raise KeyError(
            f"The model reads features from `obsm[{model.features_key!r}]`, which this slide lacks; run "
            f"`hs.pp.features(data, encoder={model.encoder!r}, key_added={model.features_key!r})` first."
        )
    params = feature_params(adata, model.features_key)
    layout = _data_layout(adata, model)
    model.check_data(
        features_key=model.features_key,
        feature_dim=int(np.shape(adata.obsm[model.features_key])[1]),
        encoder=str(params["encoder"]) if "encoder" in params else None,
        patch_um=float(params["patch_um"]) if "patch_um" in params else None,
        layout=layout,
    )
    matrix = task.location == "obsm"
    if table_added is None and matrix and adata.n_vars == 0 and sdata is not None:
        table_added = key
    if table_added is not None:
        if not matrix:
            raise ValueError(f"`table_added` is for predicted matrices; task {model.task!r} writes `obs[{key!r}]`.")
        if sdata is None:
            raise ValueError("`table_added` needs a SpatialData to add the table to; `data` is an AnnData.")
        check_key_free(sdata.tables, table_added, "tables", overwrite=overwrite)

    t0 = time.perf_counter()
    section = prepare_section(
        adata, features_key=model.features_key, layout=layout, pad_multiple=int(model.grid.get("pad_multiple", 16))
    )
    out = task.link(model.predict_section(section, device=get_device(device)))
    seconds = time.perf_counter() - t0
    run_params = {"method": model.method, "task": model.task, "features_key": model.features_key,
                  "encoder": model.encoder, "seconds": round(seconds, 3)}
    if not matrix:
        adata.obs[key] = out[:, 0].astype(np.float32)
        store_params(adata, key, run_params)
        log_written("obs", key)
        return None

    pred = np.ascontiguousarray(out, dtype=np.float32)
    adata.obsm[key] = pred
    store_params(adata, key, run_params, genes=list(model.genes))
    log_written("obsm", key)
    if table_added is not None:
        _add_predicted_table(sdata, adata, pred, model, name=table_added, key=key, params=run_params, overwrite=overwrite)
    return None


def _add_predicted_table(
    sdata: SpatialData, adata: AnnData, pred: np.ndarray, model: HistModel, *, name: str, key: str,
    params: dict, overwrite: bool,
) -> None:
    from spatialdata.models import TableModel

    obs = adata.obs.copy()
    region = obs[C.REGION_KEY].astype(str).iloc[0] if C.REGION_KEY in obs else adata.uns.get(C.UNS_KEY, {}).get(C.SHAPES_KEY)
    pt = AnnData(
        X=pred.copy(),
        obs=obs,
        var=pd.DataFrame(index=pd.Index(model.genes, dtype=str)),
        obsm={C.SPATIAL: np.asarray(adata.obsm[C.SPATIAL]).copy()} if C.SPATIAL in adata.obsm else None,
        uns={C.UNS_KEY: dict(adata.uns.get(C.UNS_KEY, {}))},
    )
    pt.layers[C.PRED] = pred.copy()
    for k in ("spatialdata_attrs",):
        pt.uns.pop(k, None)
    store_params(pt, key, params, genes=list(model.genes))
    pt = TableModel.parse(pt, region=region, region_key=C.REGION_KEY, instance_key=C.INSTANCE_KEY)
    if name in sdata.tables and overwrite:
        del sdata.tables[name]
    sdata.tables[name] = pt
    log_written("tables", name)


def _data_layout(adata: AnnData, model: HistModel) -> str:
    """The slide's own grid layout (from ``uns["hist_sd"]["technology"]``), else the model's."""
    try:
        return pick_layout(adata, "auto")
    except ValueError:
        if model.layout == "auto":
            raise
        return model.layout
