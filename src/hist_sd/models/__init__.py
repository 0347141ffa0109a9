"""hist_sd.models."""

__all__: list[str] = []
