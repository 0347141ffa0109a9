"""hist_sd.get: accessors like ``sc.get`` (predictions, measured expression, scale)."""

from hist_sd.get._accessors import expression, predictions, scale
from hist_sd.get._cohort import bags, families, genomics, survival

__all__ = ["expression", "predictions", "scale"]
__all__ += ["bags", "families", "genomics", "survival"]
