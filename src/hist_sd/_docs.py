"""Shared numpydoc parameter text: each common argument is described once and injected where it is used.

A docstring line holding only ``%(name)s`` (at the parameter's indentation) becomes the parameter's name and
description from :data:`PARAMS`, so ``help()`` and the Sphinx API reference show the same words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

__all__ = ["PARAMS", "doc_params"]

F = TypeVar("F", bound=Callable[..., object])

#: Parameter name -> description (first line of the entry is the name itself).
PARAMS: dict[str, str] = {
    "table_key": (
        'Which table of a SpatialData: ``"table"`` by default, else the only table, else the only one that is not '
        "a prediction; ignored for an AnnData."
    ),
    "tables_key": (
        'Which table of each SpatialData: ``"table"`` by default, else the only table, else the only one that is '
        "not a prediction; ignored for AnnData."
    ),
    "cohort": (
        "A :class:`hist_sd.io.Cohort`: patients (survival, clinical, genomics) and their instance features, from "
        ":func:`hist_sd.datasets.tcga` or :func:`hist_sd.io.read_cohort`."
    ),
    "device": (
        '``"auto"`` (``hs.settings.device``; by default CUDA, then Apple MPS, then the CPU), ``"cpu"``, ``"cuda"``, '
        '``"cuda:N"`` or ``"mps"``.'
    ),
    "progress": "Show a progress bar (tqdm); ``hs.settings.progress = False`` turns every bar off.",
    "lazy": (
        "Read an RGB JPEG file lazily (with pyvips): every pyramid level is a dask array decoded from the file on "
        "demand, by region, so reading costs only the small preview and :func:`hist_sd.pp.features` decodes only "
        "the rows its patches need (pixels identical to a whole decode). Other files, arrays and ``lazy=False`` "
        "are decoded whole, in memory."
    ),
    "seed": "Seed of every random step; the same seed gives the same result.",
    "key": (
        "Predicted expression to analyse: an ``obsm`` key written by :func:`hist_sd.tl.predict` (gene names in "
        '``uns[key]["genes"]``). ``None`` runs the same analysis on the measured expression of the table (raw '
        "counts log-normalised like the models' targets), so predicted and measured results sit side by side."
    ),
}

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<name>\w+)\)s[ \t]*$", re.MULTILINE)


def doc_params(fn: F) -> F:
    """Decorator: expand ``%(name)s`` lines of ``fn.__doc__`` with the shared parameter text."""
    doc = fn.__doc__
    if doc:

        def expand(m: re.Match[str]) -> str:
            name, indent = m.group("name"), m.group("indent")
            if name not in PARAMS:
                raise KeyError(f"{fn.__qualname__}: no shared documentation for parameter {name!r}.")
            arg = "table_key" if name == "tables_key" else name
            return f"{indent}{arg}\n{indent}    {PARAMS[name]}"

        fn.__doc__ = _PLACEHOLDER.sub(expand, doc)
    return fn
