"""hist_sd.train: the training engine (fitting loop, batchers per input kind, in-fold standardisation/PCA/ridge)."""

from hist_sd.train._engine import fit_sections

__all__ = ["fit_sections"]
