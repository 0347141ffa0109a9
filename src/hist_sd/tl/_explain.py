"""Grad-CAM of a HiST network for one gene, on its encoder, attention-gate and decoder layers, mapped to spots.

Written with plain torch autograd (no extra dependency): HiST's input is a grid of spot features, each layer's
activation is a map over that grid, and Grad-CAM (Selvaraju et al., ICCV 2017) weighs its channels by their
mean gradient of the gene's predicted expression summed over the slide's in-tissue spots.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd._core._data import resolve
from hist_sd._core._params import check_key_free, input_keys, log_written, store_params
from hist_sd._core._runtime import get_device
from hist_sd._docs import doc_params
from hist_sd.model import HistModel, load_model, prepare_section
from hist_sd.model._forward import ceil_to
from hist_sd.model._section import slide_normalise
from hist_sd.tl._predict import _check_features

if TYPE_CHECKING:
    import torch
    from spatialdata import SpatialData

    from hist_sd.model._section import Section

logger = logging.getLogger("hist_sd")

__all__ = ["LAYERS", "explain"]

#: Layer aliases -> the module of :class:`hist_sd.nn.HiSTNet` they name.
LAYERS: dict[str, str] = {
    "encoder": "the deepest encoder block (encoder.<depth-1>)",
    "bottleneck": "the ConvMixer bottleneck",
    "attention": "the attention gate of the full-resolution skip connection (gates.0)",
    "decoder": "the last, full-resolution decoder block (decoder.0)",
}
DEFAULT_LAYERS: tuple[str, ...] = ("encoder", "attention", "decoder")


@doc_params
def explain(
    model: HistModel | str,
    data: AnnData | SpatialData,
    *,
    gene: str,
    layer: str | Sequence[str] = DEFAULT_LAYERS,
    key_added: str = "hist_gradcam",
    device: str = "cpu",
    table_key: str | None = None,
    overwrite: bool = False,
) -> None:
    """Grad-CAM maps of a HiST model's prediction of one gene, one per layer, on the slide's spots.

    For each layer, the activation ``A`` (channels x grid) and the gradient of the target (the gene's predicted
    expression summed over in-tissue spots, one forward pass without test-time symmetry averaging) give channel
    weights ``w_c = mean(dTarget / dA_c)``; the map ``relu(sum_c w_c A_c)`` is upsampled (bilinear) to the spot
    grid, read at every spot and scaled to [0, 1] by its maximum over the slide.

    Parameters
    ----------
    model
        A HiST model (grid input: ``"hist"`` and its ablations) or the path of a saved one.
    data
        A slide with the model's features (:func:`hist_sd.pp.features`).
    gene
        One of the model's genes.
    layer
        One or more of ``"encoder"``, ``"bottleneck"``, ``"attention"``, ``"decoder"`` (see :data:`LAYERS`), or
        dotted module names of the network (``"encoder.1"``, ``"gates.1"``, ...).
    key_added
        Maps go to ``obs[f"{key_added}_{layer}"]`` (float in [0, 1]); the gene, the layers and the modules to
        ``uns[key_added]``.
    %(device)s
    %(table_key)s
    overwrite
        Replace existing maps under ``key_added``.

    Returns
    -------
    Nothing; writes the keys above. Draw them with :func:`hist_sd.pl.explain`.
    """
    if not isinstance(model, HistModel):
        model = load_model(model)
    _, adata = resolve(data, table_key)
    layers = [layer] if isinstance(layer, str) else list(layer)
    if not layers:
        raise ValueError("`layer` must name at least one layer.")
    modules = {name: _module(model, name) for name in layers}
    if gene not in model.genes:
        raise KeyError(f"`gene`={gene!r} is not predicted by the model ({len(model.genes)} genes, e.g. "
                       f"{list(model.genes[:5])}).")
    cols = {name: f"{key_added}_{name.replace('.', '_')}" for name in layers}
    for col in cols.values():
        check_key_free(adata.obs, col, "obs", overwrite=overwrite, protected=input_keys(adata, "obs"))
    check_key_free(adata.uns, key_added, "uns", overwrite=overwrite, protected=input_keys(adata, "uns"))
    layout = _check_features(adata, model)
    section = prepare_section(adata, features_key=model.features_key, layout=layout,
                              pad_multiple=int(model.grid.get("pad_multiple", 16)))
    maps = _gradcam(model, section, model.genes.index(gene), modules, get_device(device))
    for name, values in maps.items():
        adata.obs[cols[name]] = values
    adata.uns.pop(key_added, None)
    store_params(adata, key_added, {"gene": gene, "layer": layers, "method": model.method},
                 modules=[_module_name(model, n) for n in layers], columns=list(cols.values()))
    logger.info("explain: Grad-CAM of %s on %d layer(s).", gene, len(layers))
    log_written("obs", *cols.values())
    log_written("uns", key_added)


def _module(model: HistModel, name: str) -> torch.nn.Module:
    """The network module a layer alias or dotted name refers to; a clear error when it has none."""
    net = model.net
    if model.kind != "grid" or not hasattr(net, "encoder") or not hasattr(net, "decoder"):
        raise ValueError(f"Grad-CAM maps need a HiST model (grid input with encoder, attention gates and decoder); "
                         f"this model is {model.method!r} ({model.kind} input).")
    target = _module_name(model, name)
    try:
        module = net.get_submodule(target) if target else None
    except AttributeError:
        module = None
    if module is None:
        present = [n for n, _ in net.named_children()]
        raise ValueError(
            f"`layer`={name!r} is not a layer of this {model.method!r} network: use one of {sorted(LAYERS)} "
            f"(those it has) or a module name under {present} (e.g. 'encoder.1')."
        )
    return module


def _module_name(model: HistModel, name: str) -> str:
    net = model.net
    if name == "encoder":
        return f"encoder.{len(net.encoder) - 1}"
    if name == "bottleneck":
        return "bottleneck" if len(list(net.bottleneck.children())) else ""
    if name == "attention":
        return "gates.0" if getattr(net, "gates", None) is not None else ""
    if name == "decoder":
        return "decoder.0"
    return name


def _gradcam(model: HistModel, section: Section, gene_idx: int, modules: dict[str, torch.nn.Module],
             device: torch.device) -> dict[str, np.ndarray]:
    import torch
    import torch.nn.functional as F

    feats = slide_normalise(section) if model.feature_norm == "slide" else section.features
    x = (feats - model.feature_mean) / model.feature_std
    if model.projection is not None:
        x = x @ model.projection
    m = int(model.grid.get("pad_multiple", 16))
    h, w = ceil_to(int(section.rows.max()) + 1, m), ceil_to(int(section.cols.max()) + 1, m)
    grid = torch.from_numpy(section.grid(np.asarray(x, dtype=np.float32), (h, w))[None]).to(device)
    net = model.net.to(device).eval()
    acts: dict[str, torch.Tensor] = {}
    hooks = [mod.register_forward_hook(_keep(acts, name)) for name, mod in modules.items()]
    try:
        with torch.enable_grad():
            out = net(grid)
            rows = torch.as_tensor(section.rows[section.in_tissue], device=device)
            cols = torch.as_tensor(section.cols[section.in_tissue], device=device)
            target = out[0, gene_idx, rows, cols].sum()
            names = list(acts)
            grads = torch.autograd.grad(target, [acts[n] for n in names])
    finally:
        for hook in hooks:
            hook.remove()
    maps = {}
    for name, act, grad in zip(names, (acts[n] for n in names), grads, strict=True):
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * act).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)[0].detach().cpu().numpy()
        values = section.ungrid(cam)[:, 0].astype(np.float64)
        top = values[section.in_tissue].max() if section.in_tissue.any() else values.max()
        maps[name] = values / top if top > 0 else values
    return maps


def _keep(store: dict[str, torch.Tensor], name: str):
    def hook(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        store[name] = output

    return hook


def gradcam_frame(adata: AnnData, key: str = "hist_gradcam") -> pd.DataFrame:
    """The maps :func:`explain` wrote, spots x layers (columns named by layer)."""
    entry = adata.uns.get(key)
    if not isinstance(entry, dict) or "columns" not in entry:
        raise KeyError(f"`uns[{key!r}]` holds no Grad-CAM maps; run `hs.tl.explain(..., key_added={key!r})` first.")
    layers = [str(v) for v in np.atleast_1d(entry["params"]["layer"])]
    cols = [str(c) for c in np.atleast_1d(entry["columns"])]
    return pd.DataFrame({lay: adata.obs[c].to_numpy() for lay, c in zip(layers, cols, strict=True)},
                        index=adata.obs_names)
