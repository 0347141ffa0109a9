"""What a model learns: one :class:`TaskSpec` per task (targets, outputs, loss, link, scoring, where results go).

A new task is one :func:`register_task` call; training, cross-validation and prediction read everything they
need from its spec and never branch on the task's name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C
from hist_sd._core._data import match_genes
from hist_sd._core._expr import training_expression
from hist_sd._core._registry import Registry
from hist_sd._core._stats import correlate, segmentation_metrics

if TYPE_CHECKING:
    import torch

__all__ = ["TASKS", "TaskSpec", "get_task", "log_expression", "register_task", "tumor_targets"]


@dataclass(frozen=True)
class TaskSpec:
    """Everything the engine and the verbs need to know about a task.

    Attributes
    ----------
    name
        Registry name (``task=`` of :func:`hist_sd.tl.train`).
    description
        One line for listings and errors.
    targets
        ``targets(adata, genes, truth_key) -> (n_obs, n_outputs)`` float32 training targets of one slide.
    outputs
        ``outputs(genes, truth_key) -> list[str]``: names of the model's outputs.
    loss
        ``loss(pred, target, mask, corr_weight) -> scalar tensor`` on network outputs.
    regression
        Whether the targets are continuous: they are then z-scored with training-fold statistics before the loss,
        and closed-form least-squares methods (ridge) can learn the task.
    corr_loss
        Whether ``corr_weight`` (a correlation term added to the loss) applies.
    link
        Network output (in target units) -> reported value, e.g. a sigmoid for logits.
    score
        ``score(pred, truth, outputs, name) -> DataFrame`` of one held-out slide's in-tissue spots (linked predictions
        against targets): one row per gene, or one row of metrics.
    metric
        Column of ``score`` summarised over held-out slides.
    key
        Default result key of :func:`hist_sd.tl.predict`.
    location
        Where :func:`hist_sd.tl.predict` writes: ``"obsm"`` (a matrix, gene names in ``uns[key]["genes"]``) or
        ``"obs"`` (one column).
    needs_genes
        Whether ``genes=`` must be given.
    """

    name: str
    description: str
    targets: Callable[[AnnData, Sequence[str] | None, str], np.ndarray]
    outputs: Callable[[Sequence[str] | None, str], list[str]]
    loss: Callable[..., Any]
    regression: bool
    corr_loss: bool
    link: Callable[[np.ndarray], np.ndarray]
    score: Callable[[np.ndarray, np.ndarray, list[str], str], pd.DataFrame]
    metric: str
    key: str
    location: str
    needs_genes: bool


#: Every registered task, by name.
TASKS: Registry[TaskSpec] = Registry("task", "task")


def register_task(spec: TaskSpec, *, overwrite: bool = False) -> TaskSpec:
    """Add a task to :data:`TASKS` (an existing name needs ``overwrite=True``)."""
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"`spec` must be a TaskSpec, got {type(spec).__name__}.")
    if spec.location not in ("obs", "obsm"):
        raise ValueError(f"TaskSpec.location must be 'obs' or 'obsm', got {spec.location!r}.")
    return TASKS.add(spec.name, spec, overwrite=overwrite)


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name``; a clear error listing the registered tasks otherwise."""
    return TASKS.lookup(name)


# ---------------------------------------------------------------------------------------------- expression
def log_expression(adata: AnnData, genes: Sequence[str] | None, truth_key: str = "") -> np.ndarray:
    """``log1p`` of library-size-normalised expression (to 1e4 per spot) for ``genes``, ``(n_obs, n_genes)``.

    Raw counts come from ``layers["counts"]`` when present, else from ``.X`` (library size over all genes of the
    table); ``.X`` marked log1p-normalised (scanpy's ``uns["log1p"]``) is used as it is, anything else is refused
    (:func:`hist_sd._core._expr.training_expression`). The same scale as :func:`hist_sd.tl.evaluate` scores
    against.
    """
    if not genes:
        raise ValueError("`genes` must list the genes to predict for task='expression'.")
    match_genes(adata.var_names, genes)
    return training_expression(adata, genes).astype(np.float32)


def _expression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, corr_weight: float) -> torch.Tensor:
    from hist_sd.nn import masked_correlation_loss, masked_mse

    loss = masked_mse(pred, target, mask)
    if corr_weight:
        loss = loss + corr_weight * masked_correlation_loss(pred, target, mask)
    return loss


def gene_scores(pred: np.ndarray, truth: np.ndarray, genes: Sequence[str], name: str = "section") -> pd.DataFrame:
    """Per-gene Pearson and Spearman correlations between ``pred`` and ``truth`` (``(n, g)``); NaN for constant genes."""
    pearson, spearman, n_spots = correlate(pred, truth)
    return pd.DataFrame({"gene": list(genes), "pearson": pearson, "spearman": spearman, "n_spots": n_spots})


# ---------------------------------------------------------------------------------------------- tumour
def tumor_targets(adata: AnnData, genes: Sequence[str] | None, truth_key: str) -> np.ndarray:
    """Tumour labels ``obs[truth_key]`` as a ``(n_obs, 1)`` float array (errors for a missing or incomplete column)."""
    if truth_key not in adata.obs:
        raise KeyError(
            f"`truth_key`={truth_key!r} is not an obs column; compute tumour labels with `hs.tl.tumor_labels`."
        )
    t = adata.obs[truth_key]
    if t.isna().any():
        raise ValueError(f"`obs[{truth_key!r}]` has missing values; tumour labels must be True/False.")
    return t.to_numpy().astype(np.float32)[:, None]


def _tumor_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, corr_weight: float) -> torch.Tensor:
    from hist_sd.nn import masked_bce_with_logits

    return masked_bce_with_logits(pred, target, mask)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _segmentation_score(pred: np.ndarray, truth: np.ndarray, outputs: list[str], name: str) -> pd.DataFrame:
    return pd.DataFrame([segmentation_metrics(truth[:, 0], pred[:, 0], name=name)])


register_task(TaskSpec(
    name="expression",
    description="regression of log-normalised expression, one output per gene",
    targets=log_expression,
    outputs=lambda genes, truth_key: list(genes or []),
    loss=_expression_loss,
    regression=True,
    corr_loss=True,
    link=lambda x: x,
    score=gene_scores,
    metric="pearson",
    key=C.PRED,
    location="obsm",
    needs_genes=True,
))
register_task(TaskSpec(
    name="tumor",
    description="segmentation of tumour spots (obs[truth_key]), one logit",
    targets=tumor_targets,
    outputs=lambda genes, truth_key: [truth_key],
    loss=_tumor_loss,
    regression=False,
    corr_loss=False,
    link=_sigmoid,
    score=_segmentation_score,
    metric="auc",
    key=C.TUMOR_PRED,
    location="obs",
    needs_genes=False,
))
