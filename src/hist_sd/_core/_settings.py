"""Package-wide settings, ``hs.settings``: verbosity, progress bars, the default device and worker count.

Modelled on ``scanpy.settings``. Nothing here imports torch or a third-party library at import time; the
settings are read when a function runs, so changing them takes effect at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["HistSDSettings", "quiet_third_party", "settings"]

#: Verbosity names and their levels, as scanpy counts them (0 errors only ... 3 debug).
_VERBOSITY = {"error": 0, "warning": 1, "info": 2, "debug": 3}
_LOG_LEVEL = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
_DEVICES = ("auto", "cpu", "cuda", "mps")


class HistSDSettings:
    """Settings of hist_sd, the one instance of which is ``hs.settings``.

    Attributes are checked when set and read by every function when it runs; :meth:`override` changes them
    for a ``with`` block only.

    Examples
    --------
    >>> import hist_sd as hs
    >>> hs.settings.verbosity = "info"  # hist_sd logs what it does
    >>> hs.settings.progress = False  # no progress bars, hist_sd's or infercnvpy's
    >>> with hs.settings.override(device="cpu"):
    ...     pass  # every device="auto" means the CPU here
    """

    def __init__(self) -> None:
        self._verbosity = 1
        self._progress = True
        self._device = "auto"
        self._n_jobs = 1
        # the "hist_sd" logger keeps logging's own configuration until the verbosity is set

    def __repr__(self) -> str:
        return (
            f"HistSDSettings(verbosity={self.verbosity!r}, progress={self.progress!r}, "
            f"device={self.device!r}, n_jobs={self.n_jobs!r})"
        )

    # ----------------------------------------------------------------------------------------------------------
    @property
    def verbosity(self) -> str:
        """How much hist_sd and the libraries it drives report.

        ``"error"``, ``"warning"`` (default), ``"info"`` or ``"debug"`` (or 0-3, as in scanpy). Setting it sets
        the level of the ``"hist_sd"`` logger (until then, logging's own configuration applies), and, while
        hist_sd runs them, the messages of infercnvpy (e.g. "Skipped N genes because they don't have a genomic
        position annotated", which :func:`hist_sd.tl.tumor_labels` handles itself) appear only at ``"info"``
        or above.
        """
        return next(k for k, v in _VERBOSITY.items() if v == self._verbosity)

    @verbosity.setter
    def verbosity(self, value: int | str) -> None:
        if isinstance(value, str) and value.lower() in _VERBOSITY:
            level = _VERBOSITY[value.lower()]
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
            level = int(value)
        else:
            raise ValueError(f"`verbosity` must be one of {list(_VERBOSITY)} or 0-3, got {value!r}.")
        self._verbosity = level
        self._apply_verbosity()

    def _apply_verbosity(self) -> None:
        logging.getLogger("hist_sd").setLevel(_LOG_LEVEL[self._verbosity])

    @property
    def verbosity_level(self) -> int:
        """The verbosity as scanpy's number, 0 (errors) to 3 (debug)."""
        return self._verbosity

    # ----------------------------------------------------------------------------------------------------------
    @property
    def progress(self) -> bool:
        """Show progress bars (default True).

        ``False`` turns off every bar, including those of infercnvpy while hist_sd runs it; a function's own
        ``progress=False`` turns off its bar only.
        """
        return self._progress

    @progress.setter
    def progress(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"`progress` must be True or False, got {value!r}.")
        self._progress = value

    # ----------------------------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        """What ``device="auto"`` means.

        ``"auto"`` (default: CUDA, then MPS, then the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``. A
        device passed to a function explicitly wins.
        """
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        ok = isinstance(value, str) and (
            value in _DEVICES or (value.startswith("cuda:") and value[5:].isdigit())
        )
        if not ok:
            raise ValueError(f"`device` must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}.")
        self._device = value

    # ----------------------------------------------------------------------------------------------------------
    @property
    def n_jobs(self) -> int:
        """Default number of worker processes of the functions that take ``n_jobs=None`` (default 1)."""
        return self._n_jobs

    @n_jobs.setter
    def n_jobs(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`n_jobs` must be a positive integer, got {value!r}.")
        self._n_jobs = int(value)

    # ----------------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def override(self, **kwargs: Any) -> Iterator[HistSDSettings]:
        """Change settings for a ``with`` block; the previous values come back afterwards.

        Parameters
        ----------
        **kwargs
            Any of ``verbosity``, ``progress``, ``device``, ``n_jobs``.
        """
        names = ("verbosity", "progress", "device", "n_jobs")
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise TypeError(f"`override` got unknown settings {unknown}; known: {list(names)}.")
        old = {k: getattr(self, k) for k in kwargs}
        try:
            for k, v in kwargs.items():
                setattr(self, k, v)
            yield self
        finally:
            for k, v in old.items():
                setattr(self, k, v)


settings = HistSDSettings()


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """Make scanpy-logged messages and infercnvpy's progress bar follow ``hs.settings`` within the block.

    infercnvpy logs through ``scanpy.logging`` and draws its bar with ``tqdm.auto.tqdm`` without a switch;
    inside this block scanpy's verbosity is hist_sd's verbosity minus one (a warning of infercnvpy shows only at
    ``"info"``), and, with ``settings.progress`` False, infercnvpy's bar is disabled. Both come back afterwards.
    """
    import sys

    restore: list[tuple[Any, str, Any]] = []
    sc_settings = getattr(sys.modules.get("scanpy"), "settings", None)
    if sc_settings is not None:
        restore.append((sc_settings, "verbosity", sc_settings.verbosity))
        sc_settings.verbosity = max(0, settings.verbosity_level - 1)
    module = sys.modules.get("infercnvpy.tl._infercnv")
    if module is not None and not settings.progress and hasattr(module, "tqdm"):
        bar = module.tqdm

        class _Silent(bar):  # type: ignore[misc,valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)

        restore.append((module, "tqdm", bar))
        module.tqdm = _Silent
    try:
        yield
    finally:
        for obj, name, value in reversed(restore):
            setattr(obj, name, value)
