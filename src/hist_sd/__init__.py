"""hist_sd: H&E histology to spatial molecular information (HiST, G-HANet) for the scverse ecosystem."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from hist_sd import datasets, io, models, pl, pp, tl

try:
    __version__ = version("hist_sd")
except PackageNotFoundError:  # pragma: no cover - source checkout without install
    __version__ = "0.0.0"

logging.getLogger("hist_sd").addHandler(logging.NullHandler())

__all__ = ["__version__", "datasets", "io", "models", "pl", "pp", "tl"]
