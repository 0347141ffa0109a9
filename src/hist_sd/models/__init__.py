"""hist_sd.models: torch modules (HiSTNet and baselines) and masked losses; no AnnData here."""

from hist_sd.models._baselines import SpotGAT, SpotMLP, SpotTransformer, spot_graph
from hist_sd.models._histnet import ConvMixerBlock, HiSTNet, MultiScaleAttentionGate
from hist_sd.models._linear import SpotLinear
from hist_sd.models._losses import masked_bce_with_logits, masked_mse
from hist_sd.models._registry import MODELS, build, register_model

__all__: list[str] = []
__all__ += ["HiSTNet", "MultiScaleAttentionGate", "ConvMixerBlock"]
__all__ += ["SpotMLP", "SpotTransformer", "SpotGAT", "spot_graph"]
__all__ += ["SpotLinear"]
__all__ += ["masked_mse", "masked_bce_with_logits"]
__all__ += ["MODELS", "build", "register_model"]
