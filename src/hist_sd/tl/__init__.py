"""hist_sd.tl."""

__all__: list[str] = []
