"""hist_sd: H&E histology to spatial molecular information (HiST, G-HANet) for the scverse ecosystem.

Subpackages load on first use (``hs.tl``, ``hs.pp`` …), so ``import hist_sd`` stays light: it imports neither
torch nor spatialdata.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from hist_sd._core._settings import HistSDSettings, settings
from hist_sd._core._warnings import (
    ExpressionScaleWarning,
    GridSpacingWarning,
    HistSDWarning,
    TooFewGenesWarning,
    UnrecordedFeaturesWarning,
)

try:
    __version__ = version("hist_sd")
except PackageNotFoundError:  # pragma: no cover - source checkout without install
    __version__ = "0.0.0"

logging.getLogger("hist_sd").addHandler(logging.NullHandler())

# Threads waiting at an OpenMP barrier sleep instead of spinning (unless the user chose otherwise): with more
# runnable threads than cores, spinning made torch's 2-thread CPU training 10-20x slower on a 2-core machine.
# It only takes effect when torch is loaded after hist_sd.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: Public subpackages, imported when first accessed.
_SUBPACKAGES = ("datasets", "encoders", "get", "io", "model", "models", "nn", "pl", "pp", "tl", "train")

_WARNINGS = [
    "ExpressionScaleWarning",
    "GridSpacingWarning",
    "HistSDWarning",
    "TooFewGenesWarning",
    "UnrecordedFeaturesWarning",
]
__all__ = ["__version__", "settings", "HistSDSettings", *_SUBPACKAGES, *_WARNINGS]

if TYPE_CHECKING:  # pragma: no cover
    from hist_sd import datasets, encoders, get, io, model, models, nn, pl, pp, tl, train


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"hist_sd.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'hist_sd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBPACKAGES))
