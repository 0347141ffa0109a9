"""hist_sd.datasets."""

__all__: list[str] = []
