"""hist_sd.pl."""

from hist_sd.pl._explain import explain
from hist_sd.pl._scores import scores
from hist_sd.pl._spatial import predicted_vs_measured, spatial
from hist_sd.pl._survival import kaplan_meier

__all__: list[str] = ["kaplan_meier", "predicted_vs_measured", "scores", "spatial"]
__all__ += ["explain"]
