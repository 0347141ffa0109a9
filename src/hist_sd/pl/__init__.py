"""hist_sd.pl."""

from hist_sd.pl._scores import scores
from hist_sd.pl._spatial import predicted_vs_measured, spatial

__all__: list[str] = ["predicted_vs_measured", "scores", "spatial"]
