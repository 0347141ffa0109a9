"""hist_sd's warning categories: each silent-data risk has a name users can filter or escalate."""

from __future__ import annotations

__all__ = [
    "ExpressionScaleWarning",
    "GridSpacingWarning",
    "HistSDWarning",
    "TooFewGenesWarning",
    "UnrecordedFeaturesWarning",
]


class HistSDWarning(UserWarning):
    """Base class of hist_sd's warnings."""


class ExpressionScaleWarning(HistSDWarning):
    """Measured expression whose scale cannot be told (not raw counts, not marked as log1p) is used as it is."""


class UnrecordedFeaturesWarning(HistSDWarning):
    """Features carry no record of the encoder (or patch size) that made them, so nothing can be checked."""


class TooFewGenesWarning(HistSDWarning):
    """A predicted table has fewer genes than a downstream tool needs to give a meaningful result."""


class GridSpacingWarning(HistSDWarning):
    """Spots or tiles are spaced differently from the slides a spatial model was trained on."""
