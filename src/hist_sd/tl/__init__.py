"""hist_sd.tl: train, predict, cross-validate and evaluate; tumour labels and segmentation metrics; survival."""

from hist_sd.model import HistModel, load_model
from hist_sd.tl._cnv import cnv
from hist_sd.tl._cv import CVResult, cross_validate
from hist_sd.tl._enrichment import enrichment
from hist_sd.tl._evaluate import evaluate, summarize_scores
from hist_sd.tl._explain import explain
from hist_sd.tl._heterogeneity import heterogeneity
from hist_sd.tl._outcome import (
    OutcomeCV,
    OutcomeMaps,
    cross_validate_outcome,
    outcome_maps,
    predict_outcome,
    train_outcome,
)
from hist_sd.tl._predict import predict
from hist_sd.tl._pseudobulk import evaluate_bulk, pseudobulk
from hist_sd.tl._segmentation import evaluate_segmentation
from hist_sd.tl._slides import predict_slides
from hist_sd.tl._survival import SurvivalCV, cross_validate_survival, predict_survival, train_survival
from hist_sd.tl._train import train
from hist_sd.tl._tumor import tumor_labels
from hist_sd.train._survival import SURVIVAL_DEFAULTS

__all__: list[str] = ["evaluate", "summarize_scores"]
__all__ += ["CVResult", "HistModel", "cross_validate", "load_model", "predict", "train"]
__all__ += ["evaluate_segmentation", "tumor_labels"]
__all__ += ["SURVIVAL_DEFAULTS", "SurvivalCV", "cross_validate_survival", "predict_survival", "train_survival"]
__all__ += ["predict_slides"]
__all__ += ["cnv", "enrichment", "evaluate_bulk", "explain", "heterogeneity", "pseudobulk"]
__all__ += ["OutcomeCV", "OutcomeMaps", "cross_validate_outcome", "outcome_maps", "predict_outcome", "train_outcome"]
