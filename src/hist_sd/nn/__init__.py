"""hist_sd.nn: torch networks (HiSTNet and baselines, G-HANet and MIL baselines), losses; no AnnData here."""

from hist_sd.nn._baselines import SpotGAT, SpotMLP, SpotTransformer, spot_graph
from hist_sd.nn._convnext import OutcomeConvNeXt, OutcomeHead
from hist_sd.nn._histnet import ConvMixerBlock, HiSTNet, MultiScaleAttentionGate
from hist_sd.nn._linear import SpotLinear
from hist_sd.nn._losses import masked_bce_with_logits, masked_correlation_loss, masked_mse
from hist_sd.nn._mil import ABMIL, SNN, BagTransformer, GHANet
from hist_sd.nn._registry import MODELS, build, register_model
from hist_sd.nn._survival import cox_ph_loss, nll_survival_loss, reconstruction_loss, risk_from_logits

__all__: list[str] = []
__all__ += ["HiSTNet", "MultiScaleAttentionGate", "ConvMixerBlock"]
__all__ += ["SpotMLP", "SpotTransformer", "SpotGAT", "spot_graph"]
__all__ += ["SpotLinear"]
__all__ += ["masked_mse", "masked_bce_with_logits", "masked_correlation_loss"]
__all__ += ["GHANet", "ABMIL", "BagTransformer", "SNN"]
__all__ += ["cox_ph_loss", "nll_survival_loss", "reconstruction_loss", "risk_from_logits"]
__all__ += ["MODELS", "build", "register_model"]
__all__ += ["OutcomeConvNeXt", "OutcomeHead"]
