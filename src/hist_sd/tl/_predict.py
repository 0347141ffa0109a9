"""Apply a trained model to a slide and write the predictions where scanpy/squidpy/decoupler find them."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._utils import check_key_free, get_device, log_written, resolve, store_params
from hist_sd.tl._data import check_feature_params, prepare_section

if TYPE_CHECKING:
    from spatialdata import SpatialData

    from hist_sd.tl._model import HistModel

logger = logging.getLogger("hist_sd")


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
    device
        ``"auto"`` (CUDA, then MPS, then CPU) or a torch device.
    table_key
        Table of the SpatialData.
    overwrite
        Replace existing results under the same keys.

    Returns
    -------
    Nothing; writes into ``data``.
    """
    from hist_sd.tl._model import HistModel, load_model

    if not isinstance(model, HistModel):
        model = load_model(model)
    sdata, adata = resolve(data, table_key)
    is_tumor = model.task == "tumor"
    key = key_added or (C.TUMOR_PRED if is_tumor else C.PRED)
    if is_tumor:
        check_key_free(adata.obs, key, "obs", overwrite=overwrite)
    else:
        check_key_free(adata.obsm, key, "obsm", overwrite=overwrite)
    if model.features_key not in adata.obsm:
        raise KeyError(
            f"The model reads features from `obsm[{model.features_key!r}]`, which this slide lacks; run "
            f"`hs.pp.features(data, encoder={model.encoder!r}, key_added={model.features_key!r})` first."
        )
    params = check_feature_params(adata, model.features_key)
    model.check_data(
        features_key=model.features_key,
        feature_dim=int(np.shape(adata.obsm[model.features_key])[1]),
        encoder=str(params["encoder"]) if "encoder" in params else None,
    )
    if table_added is None and not is_tumor and adata.n_vars == 0 and sdata is not None:
        table_added = key
    if table_added is not None:
        if sdata is None:
            raise ValueError("`table_added` needs a SpatialData to add the table to; `data` is an AnnData.")
        check_key_free(sdata.tables, table_added, "tables", overwrite=overwrite)

    t0 = time.perf_counter()
    section = prepare_section(
        adata,
        features_key=model.features_key,
        layout=str(model.grid.get("layout", "auto")),
        pad_multiple=int(model.grid.get("pad_multiple", 16)),
        with_targets=False,
    )
    out = model.predict_section(section, device=get_device(device))
    seconds = time.perf_counter() - t0
    run_params = {"method": model.method, "task": model.task, "features_key": model.features_key,
                  "encoder": model.encoder, "seconds": round(seconds, 3)}
    if is_tumor:
        adata.obs[key] = (1.0 / (1.0 + np.exp(-out[:, 0]))).astype(np.float32)
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
