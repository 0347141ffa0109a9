"""hist_sd.pp."""

__all__: list[str] = []
