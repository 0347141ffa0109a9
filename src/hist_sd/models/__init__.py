"""hist_sd.models: an alias of :mod:`hist_sd.nn` (the torch networks and losses), kept for existing code."""

from hist_sd.nn import *  # noqa: F403
from hist_sd.nn import __all__
