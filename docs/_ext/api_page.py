"""Write ``api/index.md`` (autosummary of every public name) from the live ``__all__`` of each subpackage.

Called by ``conf.py`` before Sphinx reads the sources, so a name added to a subpackage's ``__all__`` appears in
the API reference without editing a page, and a removed one disappears. The stub pages (``api/generated/``) are
written by autosummary from the docstrings; the folder is generated and ignored by git.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: Subpackages in reading order, with their section titles. ``hs.models`` is ``hs.nn`` and is not repeated.
SECTIONS = {
    "io": "Readers and writers",
    "datasets": "Public datasets",
    "pp": "Preprocessing",
    "tl": "Tools",
    "pl": "Plotting",
    "get": "Accessors",
    "model": "Models, methods and tasks",
    "encoders": "Patch encoders",
    "nn": "Torch modules",
}

INTRO = """\
# API reference

```{eval-rst}
.. module:: hist_sd
```

`import hist_sd as hs`. Every entry below is generated from the docstrings. Parameters shared by several
functions (`table_key`, `device`, `progress`, `seed`, `cohort`) are described once, in `hist_sd._docs.PARAMS`,
and injected into each docstring, so this page, `help()` and an IDE show the same words.

## Settings

`hs.settings` works like `sc.settings`: `hs.settings.verbosity = "info"`, `hs.settings.progress = False`,
`hs.settings.device = "cpu"`, `hs.settings.n_jobs = 2`, or, for one block,
`with hs.settings.override(progress=False): ...`.
"""


def _autosummary(names: list[str], current: str) -> list[str]:
    return ["```{eval-rst}", f".. currentmodule:: {current}", "", ".. autosummary::", "   :toctree: generated", "",
            *[f"   {n}" for n in names], "```", ""]


def _data_doc(obj: object) -> str:
    """The ``#:`` comment of a module-level constant, found in the hist_sd module that defines it."""
    import sys

    from sphinx.pycode import ModuleAnalyzer

    for name, module in list(sys.modules.items()):
        if not name.startswith("hist_sd") or module is None:
            continue
        for attr, value in vars(module).items():
            if value is obj:
                try:
                    docs = ModuleAnalyzer.for_module(name).find_attr_docs()
                except Exception:  # noqa: BLE001 - a module without source: no comment
                    continue
                if ("", attr) in docs:
                    return " ".join(line.strip() for line in docs[("", attr)] if line.strip())
    return ""


def _home(obj: object, mod: str, seen: dict[int, str]) -> bool:
    """Whether ``hs.<mod>`` is where ``obj`` is documented (its defining subpackage, else its first listing)."""
    defining = getattr(obj, "__module__", "") or ""
    homes = [m for m in SECTIONS if defining == f"hist_sd.{m}" or defining.startswith(f"hist_sd.{m}.")]
    if homes:
        return homes[0] == mod
    return id(obj) not in seen


def api_page() -> str:
    """The text of ``api/index.md``."""
    import inspect

    import hist_sd as hs

    lines = [INTRO, *_autosummary(["settings", "HistSDSettings"], "hist_sd"), "## Warnings", ""]
    lines += _autosummary([n for n in hs.__all__ if n.endswith("Warning")], "hist_sd")
    seen: dict[int, str] = {}
    for mod in SECTIONS:  # where each object is documented, before any alias line points there
        for name in getattr(hs, mod).__all__:
            obj = getattr(getattr(hs, mod), name)
            if (inspect.isclass(obj) or callable(obj)) and _home(obj, mod, seen):
                seen[id(obj)] = f"hist_sd.{mod}.{name}"
    for mod, title in SECTIONS.items():
        module = getattr(hs, mod)
        documented, data, aliases = [], [], []
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or callable(obj)):
                data.append(name)
            elif seen.get(id(obj)) == f"hist_sd.{mod}.{name}":
                documented.append(name)
            else:
                aliases.append(name)
        lines += [f"## {title}: `hs.{mod}`", ""]
        lines += _autosummary(documented, f"hist_sd.{mod}")
        for name in data:
            obj = getattr(module, name)
            doc = _data_doc(obj) or f"A {type(obj).__name__}."
            lines += ["```{eval-rst}", f".. py:data:: hist_sd.{mod}.{name}", f"   :type: {type(obj).__name__}", "",
                      f"   {doc}", "```", ""]
        for name in aliases:
            obj = getattr(module, name)
            target = seen.get(id(obj)) or f"{obj.__module__}.{obj.__qualname__}"
            lines += [f"`hs.{mod}.{name}` is {{obj}}`{target}`.", ""]
    lines += ["`hs.models` is the same module as `hs.nn`.", ""]
    return "\n".join(lines)


def write(srcdir: Path) -> Path:
    """Write ``srcdir/api/index.md`` when its text changed (an unchanged file keeps Sphinx's cache valid)."""
    path = Path(srcdir) / "api" / "index.md"
    path.parent.mkdir(exist_ok=True)
    text = api_page()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        shutil.rmtree(path.parent / "generated", ignore_errors=True)  # no stubs of names that are gone
        path.write_text(text, encoding="utf-8")
    return path
