"""hist_sd.encoders: patch encoders (registry, EfficientNet-Lite0/1/2, CTransPath, timm, any module) and patch reading."""

from hist_sd.encoders._registry import Encoder, get_encoder, list_encoders, register_encoder

__all__ = ["Encoder", "get_encoder", "list_encoders", "register_encoder"]
