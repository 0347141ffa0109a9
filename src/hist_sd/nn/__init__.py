"""hist_sd.nn: torch networks (HiSTNet and baselines) and masked losses; no AnnData here."""

from hist_sd.nn._baselines import SpotGAT, SpotMLP, SpotTransformer, spot_graph
from hist_sd.nn._histnet import ConvMixerBlock, HiSTNet, MultiScaleAttentionGate
from hist_sd.nn._linear import SpotLinear
from hist_sd.nn._losses import masked_bce_with_logits, masked_correlation_loss, masked_mse
from hist_sd.nn._registry import MODELS, build, register_model

__all__: list[str] = []
__all__ += ["HiSTNet", "MultiScaleAttentionGate", "ConvMixerBlock"]
__all__ += ["SpotMLP", "SpotTransformer", "SpotGAT", "spot_graph"]
__all__ += ["SpotLinear"]
__all__ += ["masked_mse", "masked_bce_with_logits", "masked_correlation_loss"]
__all__ += ["MODELS", "build", "register_model"]
