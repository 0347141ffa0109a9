"""hist_sd.pl."""

__all__: list[str] = []
