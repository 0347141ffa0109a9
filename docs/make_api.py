"""Write ``docs/api.md`` from the live signatures and docstrings of hist_sd's public API.

Usage (from the project root)::

    python docs/make_api.py            # rewrite docs/api.md
    python docs/make_api.py --check    # exit 1 when docs/api.md is out of date
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

import hist_sd as hs

MODULES: tuple[tuple[str, str], ...] = (
    ("io", "Readers and writers: files in, SpatialData out."),
    ("datasets", "Public data sets, downloaded (sha256-checked, cached) or read from a local mirror."),
    ("pp", "Preprocessing: normalisation, patch features and encoders, grid and tiles, gene selection."),
    ("tl", "Tools: training, prediction, cross-validation, metrics, tumour labels."),
    ("pl", "Plots."),
    ("get", "Accessors like `sc.get`: predictions, measured expression and scale as plain objects."),
    ("model", "Fitted models and the registries that define methods and tasks."),
    ("encoders", "Patch encoders: registry, EfficientNet-Lite0, CTransPath, timm, any torch module."),
    ("nn", "Torch modules (HiSTNet and baselines) and masked losses; no AnnData inside (`hs.models` is an alias)."),
)
HEADER = (
    "# API reference\n\n"
    "Generated from the docstrings by `python docs/make_api.py`; do not edit by hand. Every function is\n"
    "documented in full in its docstring (`help(hs.tl.train)`, or `hs.tl.train?` in Jupyter).\n\n"
    "Conventions: the data object comes first (`AnnData` or `SpatialData`; for a SpatialData, `table_key`\n"
    "picks the table, `\"table\"` by default), options are keyword-only, results are written in place under\n"
    "`key_added` with the parameters in `uns[key_added][\"params\"]`, and an existing key is never replaced\n"
    "without `overwrite=True`. See [conventions](conventions.md).\n"
)


def rst_to_md(text: str) -> str:
    """Sphinx roles and double backticks to Markdown code spans."""
    text = re.sub(r":(?:func|meth|class|data|mod|attr):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def summary(obj: object) -> str:
    """First paragraph of the docstring, on one line."""
    doc = inspect.getdoc(obj) or ""
    first = doc.split("\n\n", 1)[0]
    return rst_to_md(re.sub(r"\s+", " ", first).strip())


def _annotation(ann: object) -> str:
    return ann if isinstance(ann, str) else inspect.formatannotation(ann)


def signature(name: str, obj: object) -> str:
    """``name(signature)`` with the (string) annotations written as in the source."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    parts: list[str] = []
    star_done = False
    params = list(sig.parameters.values())
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not star_done:
            if i == 0 or params[i - 1].kind is not p.VAR_POSITIONAL:
                parts.append("*")
            star_done = True
        if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY):
            suffix = ", /"
        else:
            suffix = ""
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            default = "..." if "factory" in repr(p.default) else repr(p.default)
            text += f" = {default}" if p.annotation is not p.empty else f"={default}"
        parts.append(text + suffix)
    ret = f" -> {_annotation(sig.return_annotation)}" if sig.return_annotation is not sig.empty else ""
    return f"{name}({', '.join(parts)}){ret}"


def data_summary(obj: object) -> str:
    """A constant: its type and contents (the keys of a registry)."""
    if isinstance(obj, dict):
        return f"`dict` registry: {', '.join(f'`{k}`' for k in obj)}"
    return f"`{type(obj).__name__}`: `{obj!r}`"


def kind(obj: object) -> str:
    if inspect.isclass(obj):
        return "class"
    if callable(obj):
        return "function"
    return "data"


def render() -> str:
    lines = [HEADER]
    for mod_name, blurb in MODULES:
        mod = getattr(hs, mod_name)
        lines.append(f"\n## `hs.{mod_name}`\n\n{blurb}\n")
        lines.append("| name | summary |\n| --- | --- |")
        names = sorted(mod.__all__, key=str.lower)
        for n in names:
            obj = getattr(mod, n)
            text = (data_summary(obj) if kind(obj) == "data" else summary(obj)).replace("|", r"\|")
            lines.append(f"| [`{n}`](#hs{mod_name}{n.lower()}) | {text} |")
        for n in names:
            obj = getattr(mod, n)
            lines.append(f"\n### `hs.{mod_name}.{n}`\n")
            if kind(obj) == "data":
                lines.append(data_summary(obj) + "\n")
                continue
            lines.append(f"```python\n{signature(f'hs.{mod_name}.{n}', obj)}\n```\n")
            lines.append(summary(obj) + "\n")
            if inspect.isclass(obj):
                methods = [
                    m for m, v in vars(obj).items()
                    if not m.startswith("_") and (callable(v) or isinstance(v, classmethod | staticmethod))
                ]
                for m in methods:
                    v = getattr(obj, m)
                    lines.append(f"- `{signature(m, v)}`: {summary(v)}")
                if methods:
                    lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that docs/api.md is up to date")
    args = parser.parse_args()
    path = Path(__file__).with_name("api.md")
    text = render()
    if args.check:
        ok = path.exists() and path.read_text(encoding="utf-8") == text
        sys.stderr.write("docs/api.md is up to date\n" if ok else "docs/api.md is out of date: run docs/make_api.py\n")
        return 0 if ok else 1
    path.write_text(text, encoding="utf-8")
    sys.stderr.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
